"""What reaches a person speaks their language (settings.LANGUAGES). A message not translated
into it falls back to English, and is logged once a language: a missing translation is found,
not shipped in silence. The `.po` files themselves are checked by tests/test_translations.py."""

import gettext
import logging

from django.conf import settings
from django.utils import translation
from django.utils.translation import trans_real

logger = logging.getLogger("invoicegen.i18n")
MAX_REPORTED = 10_000


class ReportUntranslated(gettext.NullTranslations):
    """The last fallback of every language's catalog (after the default language's, which
    every other one falls back to): it answers the English message, and logs it the first time
    a language lacks it."""

    def __init__(self):
        super().__init__()
        # (language, message) logged already. Most are the code's own messages, but a stored
        # text shown translated (a link's withdrawal reason) may be anything: bounded.
        self.reported: set[tuple[str, str]] = set()

    def gettext(self, message):
        self._report(message)
        return message

    def ngettext(self, msgid1, msgid2, n):
        self._report(msgid1)
        return msgid1 if n == 1 else msgid2

    def _report(self, message: str) -> None:
        language = translation.get_language() or settings.LANGUAGE_CODE
        if language.partition("-")[0] == "en" or (language, message) in self.reported:
            return
        if len(self.reported) >= MAX_REPORTED:
            self.reported.clear()  # a message may then be logged once more
        self.reported.add((language, message))
        logger.warning("No %s translation of %r: it is shown in English.", language, message)


untranslated = ReportUntranslated()


def report_untranslated() -> None:
    """Put `untranslated` at the end of the catalogs' chain, once: after the default language's
    catalog (which every language falls back to) and the catalogs it falls back to itself."""
    last = trans_real.translation(settings.LANGUAGE_CODE)
    while last._fallback is not None and last._fallback is not untranslated:
        last = last._fallback
    last._fallback = untranslated
