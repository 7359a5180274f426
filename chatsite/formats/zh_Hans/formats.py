"""Simplified Chinese number formats: figures grouped by thousands with a comma (12,804),
as Chinese dashboards and consoles write token counts; Django's own locale groups by ten
thousands without a separator (12804). Every other format is Django's zh_Hans one."""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
