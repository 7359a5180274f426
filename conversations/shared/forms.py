"""What every form of the site shares: a service's errors shown beside the fields they
name, and labels without Django's trailing colon."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError


class ServiceErrors:
    """Forms that show a service's errors."""

    def add_service_errors(self, error: ValidationError) -> None:
        """Put a service's {field: message} errors beside the fields they name."""
        if hasattr(error, "error_dict"):
            for name, errors in error.error_dict.items():
                self.add_error(name if name in self.fields else None, errors)
        else:
            self.add_error(None, error)


class Form(ServiceErrors, forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
