"""Encrypt every provider's saved API key again under the first CHATSITE_ENCRYPTION_KEY.

Rotating the encryption key: put the new key first in CHATSITE_ENCRYPTION_KEY and keep the
old one after it (`new,old`), restart, run this, then drop the old key."""

from django.core.management.base import BaseCommand, CommandError

from conversations.providers import services


class Command(BaseCommand):
    help = "Encrypt every provider's API key again under the first CHATSITE_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        done = services.provider_keys_rotate()
        self.stdout.write(f"{done.rotated} provider keys encrypted under the first key.")
        if done.unreadable:
            # Their keys stay as they are: enter them again in the admin.
            raise CommandError(
                "No CHATSITE_ENCRYPTION_KEY opens the key of: "
                + ", ".join(done.unreadable)
                + ". Enter those keys again in the admin (Providers)."
            )
