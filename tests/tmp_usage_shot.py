from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from conversations import services
from conversations.models import Completion, UserBudget
from .support import browser_login

def test_shot(live_stack, page, alice, bob, staff):
    UserBudget.objects.create(user=alice, monthly_token_limit=1000)
    for user, n in ((alice, 5), (bob, 3)):
        for model in ("gpt-4o-mini", "gpt-4o"):
            conv = services.conversation_create(owner=user, model=model)
            for i in range(n):
                Completion.objects.create(conversation=conv, user=user, model=model, status="succeeded",
                    prompt_tokens=100 * i + 7, completion_tokens=50 * i + 3, total_tokens=150 * i + 10,
                    cost=Decimal("0.0012") * i if model == "gpt-4o-mini" else None,
                    currency="USD" if model == "gpt-4o-mini" else "",
                    queued_at=timezone.now() - timedelta(days=i * 2))
    browser_login(page, live_stack.url, "sam", "sam-password-1")
    page.goto(live_stack.url + "/usage/all/?order=-cost")
    page.screenshot(path="/tmp/all.png", full_page=True)
    page.goto(live_stack.url + "/usage/all/?by=model")
    page.screenshot(path="/tmp/all_model.png", full_page=True)
    page.goto(live_stack.url + f"/usage/all/{alice.pk}/")
    page.screenshot(path="/tmp/drill.png", full_page=True)
