"""CSV files that spreadsheet programs open safely: UTF-8 they recognise, and no cell that
runs as a formula."""

# Excel opens a CSV file as UTF-8 (Chinese names intact) only when it starts with this.
UTF8_BOM = "\ufeff"


def spreadsheet_safe(text: str) -> str:
    """A cell such as "=cmd" or "+cmd" would run as a formula: it is kept as text."""
    if text[:1] in ("=", "+", "-", "@"):
        return "'" + text
    return text
