"""8. Search your own chats (issue 21): one person's 100,000 messages among 1,000,000 in
all, searched with `conversations.search.selectors.search_own` in-process and through
`/search/?q=` over HTTP. PostgreSQL loads the messages with SQL (`generate_series`, then
`VACUUM ANALYZE` so the GIN index's pending list is merged); SQLite through the ORM, up to
SQLITE_MAX_SEARCH_ROWS (its FTS5 triggers index each row as it is inserted).

The text is made from g, the row's number, alone (the same in SQL and in Python): tokens
of a vocabulary of English words and Chinese phrases, picked with multiplicative hashing
and skewed so a few are in most messages and most in a few, cut to 50–400 characters, with
two rare terms planted at fixed rows. Every tenth row is the person's."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from bench.common import SQLITE_MAX_SEARCH_ROWS, Mode, log, summary
from bench.people import Person, log_in, make_users
from bench.stack import Stack

_EN = """
the to and a of you is it that for in this with can be on what how we my your are not do if
have model answer code will but so an at use from as all one about more time just like please
would could should make there which when was they thanks get data need help list write explain
example first also any some why other new me file error test because work each version page
user text question step run then function value way table python number project server change
set query result output input message chat report check right into add only over still next
good sure see here name word default string build line try look best simple know think want
long short doc update start end fix issue system process plan team meeting summary draft email
review idea note order price cost budget week month today tomorrow morning evening travel trip
hotel flight city map route weather rain sun recipe cook dinner lunch garden plant water book
story chapter poem song music movie game score learn study exam teacher class school history
science math physics chemistry biology language translate grammar sentence paragraph essay
article source link image photo video design color layout font style button screen window
click mobile phone network cloud database index search cache memory disk backup deploy release
branch merge commit patch bug crash log trace debug profile speed latency benchmark load
stress limit quota account password login security privacy policy contract invoice receipt
payment bank loan tax salary career interview resume skill goal habit health sleep exercise
doctor medicine coffee tea breakfast weekend holiday birthday gift party friend family parent
child""".split()
_ZH = """
我们 你好 这个 一个 可以 问题 什么 如何 为什么 因为 所以 但是 如果 已经 还是 需要 谢谢 请问
我想 帮我 解释 例如 代码 模型 数据 文件 错误 测试 项目 服务器 数据库 报告 会议 总结 邮件 计划
今天 明天 上午 下午 天气 旅行 酒店 航班 城市 地图 菜谱 晚饭 午饭 学习 考试 老师 学校 历史 科学
数学 语言 翻译 语法 句子 文章 图片 视频 设计 颜色 按钮 手机 网络 云端 搜索 缓存 内存 备份 发布
分支 合并 日志 速度 延迟 性能 密码 登录 安全 隐私 合同 发票 付款 银行 工资 面试 简历 技能 目标
习惯 健康 睡眠 运动 医生 咖啡 周末 生日 礼物 朋友 家人 孩子 我们的 他们的 这样 那样 一下 一些
非常 特别 其实 然后""".split()
_PUNCT = (", ", ". ", "? ", "，", "。")


def _tokens() -> tuple[str, ...]:
    """Two English words (with their space) to one Chinese phrase, a punctuation mark every
    twentieth token: the earlier a token, the more often it is picked (see _pick)."""
    tokens: list[str] = []
    en, zh = iter(_EN), iter(_ZH)
    while True:
        batch = [f"{w} " for w in (next(en, None), next(en, None)) if w] + [
            w for w in (next(zh, None),) if w
        ]
        if not batch:
            break
        for token in batch:
            if token not in tokens:
                tokens.append(token)
            if len(tokens) % 20 == 0:
                tokens.append(_PUNCT[len(tokens) // 20 % len(_PUNCT)])
    return tuple(tokens)


TOKENS = _tokens()
# Planted: in one row of every `rare_every` (a tenth of the person's: ~10 of theirs), and
# one of every `zh_every` (~100 of theirs); in other people's rows of the same blocks too.
RARE_EN = "zephyrquartz"
RARE_ZH = "量子纠缠"  # none of its characters is in the vocabulary
# About 22% of the messages hold "model" and 29% "数据" (two characters: no trigram).
COMMON_EN = "model"
COMMON_ZH = "数据"
MISS = "kubernetes"
# Two common words, never one after the other: every trigram common, the phrase nowhere.
PHRASE_MISS = "data model"
# Two characters of the rare phrase: as rare, and no trigram.
RARE_ZH_2 = RARE_ZH[2:]
# Issue 21's target for the page's p95 on PostgreSQL; the kinds above it get their message
# query's EXPLAIN ANALYZE in the results.
TARGET_MS = 100
OTHERS = 100  # other people, 18 conversations each
OTHER_CONVERSATIONS = 18
BATCH = 100_000  # rows per INSERT … SELECT (PostgreSQL), one log line each
MODEL = "gpt-4o-mini"

# (key, what, query, page)
KINDS = (
    ("rare_en", "rare English word", RARE_EN, 1),
    ("common_en", "common English word", COMMON_EN, 1),
    ("rare_zh", "rare Chinese phrase (4 characters)", RARE_ZH, 1),
    ("common_zh", "common Chinese, 2 characters (no trigram)", COMMON_ZH, 1),
    ("rare_zh_2", "rare Chinese, 2 characters (no trigram)", RARE_ZH_2, 1),
    ("miss", "no hit", MISS, 1),
    ("phrase_miss", "two common words, no hit as a phrase", PHRASE_MISS, 1),
    ("common_en_page2", "common English word, page 2", COMMON_EN, 2),
)


class Layout:
    """Where row g goes: every tenth row is the person's (their `user_conversations`
    conversations in turn), the others' are spread over OTHERS people."""

    def __init__(self, total: int, others: int) -> None:
        self.total = total
        self.others = others
        self.user_rows = total // 10
        self.user_conversations = max(10, self.user_rows // 100)
        self.other_blocks = others * OTHER_CONVERSATIONS // 9
        self.other_conversations = self.other_blocks * 9
        self.rare_every = max(1, self.user_rows // 10)
        self.zh_every = max(1, self.user_rows // 100)
        # Different rows for the two (rare_every is a multiple of zh_every).
        self.rare_at = self.rare_every - 1
        self.zh_at = self.zh_every // 3 if self.zh_every > 1 else 0

    def conversation(self, g: int) -> int:
        """The index of row g's conversation (the person's first, then the others')."""
        if g % 10 == 0:
            return (g // 10) % self.user_conversations
        return self.user_conversations + (g // 10) % self.other_blocks * 9 + g % 10 - 1

    def position(self, g: int) -> int:
        if g % 10 == 0:
            return g // 10 // self.user_conversations
        return g // 10 // self.other_blocks

    def planted(self, g: int) -> str:
        block = g // 10
        if block % self.rare_every == self.rare_at:
            return RARE_EN
        if self.zh_every > 1 and block % self.zh_every == self.zh_at:
            return RARE_ZH
        return ""

    def expected(self, query: str) -> int | None:
        """How many of the person's messages hold `query`, when the layout says."""
        if query == RARE_EN:
            return sum(1 for k in range(self.user_rows) if k % self.rare_every == self.rare_at)
        if query in (RARE_ZH, RARE_ZH_2):
            if self.zh_every <= 1:
                return None
            return sum(1 for k in range(self.user_rows) if k % self.zh_every == self.zh_at)
        if query in (MISS, PHRASE_MISS):
            return 0
        return None


def _pick(g: int, i: int) -> int:
    """Token i of row g: Knuth's multiplicative hash, three digits of it cubed (skewed)."""
    h = ((g * 1009 + i) * 2654435761) % 4294967296
    r = (h // 65536) % 1000
    return r * r * r * len(TOKENS) // 1_000_000_000


def length(g: int) -> int:
    return 50 + (g * 7919) % 351


def content(g: int, layout: Layout) -> str:
    """Row g's text, as the SQL of _load_sql makes it."""
    size = length(g)
    text = "".join(TOKENS[_pick(g, i)] for i in range(size // 4 + 4))[:size]
    term = layout.planted(g)
    if term:
        text = f"{text[: size // 2]} {term} {text[size // 2 :]}"
    return text.rstrip(" ")


def _load_sql(layout: Layout, first: int, last: int) -> None:
    """Rows first..last (inclusive) in one INSERT … SELECT generate_series (PostgreSQL):
    the arithmetic of Layout, _pick and content, on bigints (exact, as in Python)."""
    from django.db import connection

    lay = layout
    tokens = "ARRAY[" + ",".join(f"'{t}'" for t in TOKENS) + "]::text[]"
    planted = f"WHEN (g / 10) %% {lay.rare_every} = {lay.rare_at} THEN '{RARE_EN}' "
    if lay.zh_every > 1:
        planted += f"WHEN (g / 10) %% {lay.zh_every} = {lay.zh_at} THEN '{RARE_ZH}' "
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO conversations_message (
                conversation_id, role, content, html, parent_id, position, status,
                completion_id, choice_index, finish_reason, is_selected, created_at)
            SELECT c.conversation_id,
                CASE WHEN p.pos %% 2 = 0 THEN 'user' ELSE 'assistant' END,
                rtrim(CASE WHEN p.term = '' THEN b.base
                      ELSE left(b.base, p.len / 2) || ' ' || p.term || ' '
                           || substr(b.base, p.len / 2 + 1) END, ' '),
                '', NULL, p.pos, 'complete', NULL, NULL, '', true,
                now() - ({lay.total} - g) * interval '1 second'
            FROM generate_series(%s::bigint, %s::bigint) AS g
            CROSS JOIN LATERAL (
                SELECT
                    CASE WHEN g %% 10 = 0 THEN (g / 10) %% {lay.user_conversations}
                         ELSE {lay.user_conversations} + (g / 10) %% {lay.other_blocks} * 9
                              + g %% 10 - 1 END AS k,
                    CASE WHEN g %% 10 = 0 THEN g / 10 / {lay.user_conversations}
                         ELSE g / 10 / {lay.other_blocks} END AS pos,
                    (50 + (g * 7919) %% 351)::int AS len,
                    CASE {planted}ELSE '' END AS term
            ) AS p
            CROSS JOIN LATERAL (
                SELECT left(string_agg(({tokens})[1 + h.r * h.r * h.r * {len(TOKENS)}
                                                      / 1000000000], '' ORDER BY i),
                            p.len) AS base
                FROM generate_series(0, p.len / 4 + 3) AS i
                CROSS JOIN LATERAL (
                    SELECT ((g * 1009 + i) * 2654435761) %% 4294967296 / 65536 %% 1000 AS r
                ) AS h
            ) AS b
            JOIN bench_search_conversation c ON c.k = p.k
            """,
            [first, last],
        )


def _load_orm(layout: Layout, conversations: list[int]) -> None:
    from django.utils import timezone

    from conversations.chat.models import Message

    now = timezone.now()
    batch = []
    for g in range(layout.total):
        position = layout.position(g)
        batch.append(
            Message(
                conversation_id=conversations[layout.conversation(g)],
                role=Message.Role.USER if position % 2 == 0 else Message.Role.ASSISTANT,
                content=content(g, layout),
                position=position,
                created_at=now - timedelta(seconds=layout.total - g),
            )
        )
        if len(batch) >= 5000:
            Message.objects.bulk_create(batch)
            batch = []
            if g + 1 >= 20_000 and (g + 1) % 50_000 == 0:
                log(f"search: {g + 1:,} of {layout.total:,} messages")
    Message.objects.bulk_create(batch)


def _title(k: int) -> str:
    words = [_EN[(k * 2654435761 >> s) % len(_EN)] for s in (3, 11, 19)]
    return " ".join(words).capitalize()


def _people(stack: Stack, layout: Layout) -> tuple[Any, list[int]]:
    """The person, the others, and every conversation's id in Layout order; on PostgreSQL
    also in the `bench_search_conversation` table the SQL load joins."""
    from django.db import connection

    from conversations.chat.models import Conversation

    [person] = make_users("bench-seeker-", 1)
    others = make_users("bench-crowd-", layout.others)
    rows = [
        Conversation(owner=person, title=_title(k), model=MODEL)
        for k in range(layout.user_conversations)
    ] + [
        Conversation(owner=others[j % len(others)], title=_title(10_000 + j), model=MODEL)
        for j in range(layout.other_conversations)
    ]
    ids = [c.pk for c in Conversation.objects.bulk_create(rows)]
    if stack.on_servers:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE bench_search_conversation (k int PRIMARY KEY, conversation_id int)"
            )
            cursor.executemany(
                "INSERT INTO bench_search_conversation VALUES (%s, %s)", list(enumerate(ids))
            )
    return person, ids


def _load(stack: Stack, layout: Layout, conversations: list[int]) -> dict[str, Any]:
    from django.db import connection

    began = time.monotonic()
    if not stack.on_servers:
        _load_orm(layout, conversations)
        return {"load_seconds": time.monotonic() - began, "vacuum_seconds": 0.0}
    for first in range(0, layout.total, BATCH):
        last = min(layout.total, first + BATCH) - 1
        _load_sql(layout, first, last)
        log(f"search: {last + 1:,} of {layout.total:,} messages loaded")
    loaded = time.monotonic() - began
    began = time.monotonic()
    # Outside a transaction (Django's autocommit): merges the GIN pending list, and the
    # statistics the planner chooses the index by.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE conversations_message")
        cursor.execute("VACUUM ANALYZE conversations_conversation")
    return {"load_seconds": loaded, "vacuum_seconds": time.monotonic() - began}


def _table_stats(conversations: list[int]) -> dict[str, Any]:
    """The loaded messages' lengths; on PostgreSQL the table's and the index's size."""
    from django.db import connection
    from django.db.models import Avg, Count, Max, Min
    from django.db.models.functions import Length

    from conversations.chat.models import Message

    stats = Message.objects.filter(conversation_id__in=conversations).aggregate(
        rows=Count("pk"), shortest=Min(Length("content")), mean=Avg(Length("content")),
        longest=Max(Length("content")),
    )  # fmt: skip
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size('conversations_message'), "
                "pg_relation_size('msg_content_trgm')"
            )
            stats["table_mb"], stats["index_mb"] = (v / 2**20 for v in cursor.fetchone())
    return stats


def _plan(user: Any, query: str) -> dict[str, Any]:
    """The message query's plan: its nodes, and whether the trigram index is used."""
    from django.db import connection

    from conversations.search.selectors import PAGE_SIZE, matching_messages

    rows = matching_messages(user, query).select_related("conversation").order_by("-pk")
    rows = rows[: PAGE_SIZE + 1]
    if connection.vendor == "postgresql":
        nodes: list[str] = []

        def walk(node: dict) -> None:
            name = node["Node Type"]
            if "Index Name" in node:
                name += f" on {node['Index Name']}"
            elif "Relation Name" in node:
                name += f" on {node['Relation Name']}"
            nodes.append(name)
            for child in node.get("Plans", []):
                walk(child)

        walk(json.loads(rows.explain(format="json"))[0]["Plan"])
        return {"nodes": nodes, "index": any("msg_content_trgm" in n for n in nodes)}
    # SQLite's EXPLAIN QUERY PLAN lines start with their node's id, parent and a zero.
    nodes = [
        re.sub(r"^\d+ \d+ \d+ ", "", line.strip())
        for line in rows.explain().splitlines()
        if line.strip()
    ]
    return {"nodes": nodes, "index": any("conversations_message_search" in n for n in nodes)}


def explain_analyze(user: Any, query: str, page: int = 1) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a page's message query (PostgreSQL), as text."""
    from conversations.search.selectors import PAGE_SIZE, matching_messages

    rows = matching_messages(user, query).select_related("conversation").order_by("-pk")
    start = (page - 1) * PAGE_SIZE
    return rows[start : start + PAGE_SIZE + 1].explain(analyze=True, buffers=True)


def _time_kind(
    person: Person, user: Any, query: str, page: int, reps: int
) -> dict[str, dict[str, float]]:
    """search_own in-process and the page over HTTP (`http`), `reps` times each after one
    warm-up."""
    from conversations.search.selectors import search_own

    url = f"/search/?q={quote(query)}" + (f"&page={page}" if page > 1 else "")
    search_own(user, query, page)
    _elapsed, response = person.browser.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    timed: dict[str, list[float]] = {"search_own": [], "http": []}
    for _ in range(reps):
        began = time.perf_counter()
        search_own(user, query, page)
        timed["search_own"].append(time.perf_counter() - began)
    for _ in range(reps):
        elapsed, response = person.browser.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        timed["http"].append(elapsed)
    return {name: summary(values) for name, values in timed.items()}


def search(stack: Stack, mode: Mode) -> dict[str, Any]:
    from django.db import connection

    from conversations.search.selectors import PAGE_SIZE, matching_messages, search_own

    total, note = mode.search_rows, ""
    if not stack.on_servers and total > SQLITE_MAX_SEARCH_ROWS:
        total = SQLITE_MAX_SEARCH_ROWS
        note = (
            f"SQLite: rows loaded through the ORM (and its FTS5 triggers), so at most "
            f"{SQLITE_MAX_SEARCH_ROWS:,} in all, {SQLITE_MAX_SEARCH_ROWS // 10:,} of them "
            "the person's."
        )
    layout = Layout(total, OTHERS if total >= 100_000 else 10)
    user, conversations = _people(stack, layout)
    log(f"search: loading {total:,} messages, {layout.user_rows:,} of them one person's")
    loaded = _load(stack, layout, conversations)
    _check_loaded(layout, conversations)
    table = _table_stats(conversations)
    [person] = log_in(stack, [user], parallel=1)
    kinds = []
    for key, what, query, page in KINDS:
        matches = matching_messages(user, query).count()
        expected = layout.expected(query)
        if expected is not None and matches != expected:
            raise RuntimeError(f"search for {query!r}: {matches} of the person's, not {expected}")
        results = search_own(user, query, page)
        shown = len(results.messages)
        if shown != min(PAGE_SIZE, max(0, matches - (page - 1) * PAGE_SIZE)):
            raise RuntimeError(f"search for {query!r} page {page} showed {shown} of {matches}")
        log(f"search: {what} ({query!r}, page {page}): {matches:,} matches x {mode.search_reps}")
        timed = _time_kind(person, user, query, page, mode.search_reps)
        kinds.append(
            {"kind": key, "what": what, "query": query, "page": page, "matches": matches,
             "shown": shown, "titles": len(results.titles), "plan": _plan(user, query),
             **timed}
        )  # fmt: skip
    over = [k for k in kinds if k["http"]["p95"] >= TARGET_MS] if stack.on_servers else []
    return {
        "database": connection.vendor,
        "rows": total,
        "user_rows": layout.user_rows,
        "people": 1 + layout.others,
        "user_conversations": layout.user_conversations,
        "conversations": layout.user_conversations + layout.other_conversations,
        "reps": mode.search_reps,
        "note": note,
        "table": table,
        **loaded,
        "kinds": kinds,
        # After the runs, so the rows are as cached as they were for the last ones.
        "analyzed": [
            {
                "kind": k["kind"],
                "query": k["query"],
                "page": k["page"],
                "plan": explain_analyze(user, k["query"], k["page"]),
            }
            for k in over
        ],
    }


def _check_loaded(layout: Layout, conversations: list[int]) -> None:
    """The rows' count, and a few rows' text against what Python makes for row g (found by
    its conversation and position, which Layout gives each row alone)."""
    from conversations.chat.models import Message

    count = Message.objects.filter(conversation_id__in=conversations).count()
    if count != layout.total:
        raise RuntimeError(f"search: {count:,} messages loaded, not {layout.total:,}")
    planted = next(g for g in range(0, layout.total, 10) if layout.planted(g) == RARE_EN)
    for g in sorted({0, 1, 7, planted, layout.total // 2 + 3, layout.total - 1}):
        text = Message.objects.get(
            conversation_id=conversations[layout.conversation(g)], position=layout.position(g)
        ).content
        if text != content(g, layout):
            raise RuntimeError(
                f"search: row {g} holds {text[:80]!r}, not {content(g, layout)[:80]!r}"
            )
