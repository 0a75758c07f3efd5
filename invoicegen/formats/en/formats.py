# Django's English formats apart from these (django/conf/locale/en/formats.py).
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
