"""Who opens a link's page without being a person reading it. Mail security gateways fetch
every link of an incoming email, chat apps and social sites unfurl the links they are given,
browsers prefetch the links a page points to: none of these is the client looking, so none
counts as a view. The one list of such visitors is here (README, "Secure downloads")."""

# Parts of the User-Agent of link scanners, previewers and scripts, matched in any case.
SCANNER_AGENTS = (
    "bingpreview",  # Microsoft Safe Links and Outlook previews
    "microsoft office",  # Office apps checking a link before they open it
    "barracuda",
    "proofpoint",
    "mimecast",
    "google-safety",
    "googlebot",
    "google-inspectiontool",
    "facebookexternalhit",
    "slackbot",
    "twitterbot",
    "linkedinbot",
    "discordbot",
    "whatsapp",
    "telegrambot",
    "skypeuripreview",
    "python-requests",
    "python-urllib",
    "curl/",
    "wget/",
)


def is_automated(request) -> bool:
    """HEAD (what a checker asks), a prefetch (`Sec-Purpose` or `Purpose: prefetch`), no
    User-Agent at all, or one of SCANNER_AGENTS."""
    if request.method == "HEAD":
        return True
    purpose = request.headers.get("Sec-Purpose", "") + request.headers.get("Purpose", "")
    if "prefetch" in purpose.lower():
        return True
    agent = request.headers.get("User-Agent", "").lower()
    return not agent or any(scanner in agent for scanner in SCANNER_AGENTS)
