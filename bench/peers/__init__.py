"""The peers measured beside the product's audit trail: django-pghistory and
django-simple-history tracking `billing.Invoice` (bench/capture.py switches them on and off).
A bench-only app: its models and migrations never reach the product."""
