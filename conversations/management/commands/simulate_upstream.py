"""Serve the simulated OpenAI-compatible upstream over HTTP."""

from django.conf import settings
from django.core.management.base import BaseCommand

from conversations.upstream import simulator


class Command(BaseCommand):
    help = "Serve a simulated OpenAI-compatible upstream (POST /v1/chat/completions)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.SIMULATOR_PORT)
        parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
        parser.add_argument(
            "--token-delay", type=float, default=0.02, help="seconds between streamed tokens"
        )
        parser.add_argument("--api-key", default="", help="require this key (default: any)")
        parser.add_argument("--verbose", action="store_true")
        parser.add_argument(
            "--plain",
            action="store_true",
            help="replies of one plain sentence (the default shows Markdown: a list, a "
            "table, code, a link)",
        )

    def handle(self, *args, **options):
        simulator.serve(
            host=options["host"],
            port=options["port"],
            latency=options["latency"],
            token_delay=options["token_delay"],
            api_key=options["api_key"],
            verbose=options["verbose"],
            rich=not options["plain"],
        )
