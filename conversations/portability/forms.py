"""The import page's form: the file, its size checked before anything reads it."""

from __future__ import annotations

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from conversations.shared.forms import Form

from . import readers
from .document import max_bytes


class ImportForm(Form):
    file = forms.FileField(
        label=_("Export file"),
        help_text=_(
            "A chatsite export (.json or .zip), or ChatGPT's conversations.json or the .zip "
            "of its data export."
        ),
        widget=forms.FileInput(attrs={"accept": ".json,.zip,application/json,application/zip"}),
        error_messages={"required": _("Choose a file to import.")},
    )

    def clean_file(self) -> UploadedFile:
        upload = self.cleaned_data["file"]
        if upload.size > max_bytes():
            raise readers.too_large_error()
        return upload
