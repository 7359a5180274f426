"""The index behind a person's search of their own chats (conversations/search): substrings
of any script, Chinese included, so trigrams rather than words.

PostgreSQL: pg_trgm's GIN index on UPPER(content), the expression Django's `icontains`
compares. SQLite: an FTS5 table with the trigram tokenizer over the messages' content (an
external-content table kept by triggers; a reply is indexed once it stops streaming)."""

from django.db import migrations

FTS = "conversations_message_search"

SQLITE_CREATE = [
    f"""CREATE VIRTUAL TABLE {FTS} USING fts5(
        content, content='conversations_message', content_rowid='id',
        tokenize='trigram case_sensitive 0')""",
    f"""INSERT INTO {FTS}(rowid, content)
        SELECT id, content FROM conversations_message WHERE status != 'streaming'""",
    f"""CREATE TRIGGER {FTS}_insert AFTER INSERT ON conversations_message
        WHEN new.status != 'streaming' BEGIN
            INSERT INTO {FTS}(rowid, content) VALUES (new.id, new.content);
        END""",
    f"""CREATE TRIGGER {FTS}_delete AFTER DELETE ON conversations_message
        WHEN old.status != 'streaming' BEGIN
            INSERT INTO {FTS}({FTS}, rowid, content) VALUES ('delete', old.id, old.content);
        END""",
    f"""CREATE TRIGGER {FTS}_update AFTER UPDATE OF content, status ON conversations_message
        BEGIN
            INSERT INTO {FTS}({FTS}, rowid, content)
                SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
            INSERT INTO {FTS}(rowid, content)
                SELECT new.id, new.content WHERE new.status != 'streaming';
        END""",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {FTS}_insert",
    f"DROP TRIGGER IF EXISTS {FTS}_delete",
    f"DROP TRIGGER IF EXISTS {FTS}_update",
    f"DROP TABLE IF EXISTS {FTS}",
]
POSTGRES_CREATE = [
    # Trusted since PostgreSQL 13: the database's owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE INDEX IF NOT EXISTS msg_content_trgm ON conversations_message
        USING gin (UPPER(content) gin_trgm_ops)""",
]
POSTGRES_DROP = [
    "DROP INDEX IF EXISTS msg_content_trgm",
]


def _run(statements: dict):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("conversations", "0009_own_chats")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        )
    ]
