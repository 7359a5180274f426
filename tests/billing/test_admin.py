"""Prices and per-user budgets in the admin (superusers)."""

from decimal import Decimal

from django.urls import reverse

from conversations.models import ModelPrice, UserBudget


def changelist(model) -> str:
    return reverse(f"admin:conversations_{model._meta.model_name}_changelist")


def test_superusers_edit_prices_in_the_list(client, superuser):
    price = ModelPrice.objects.create(
        model="gpt-4o-mini", prompt_price_per_million=1, completion_price_per_million=2
    )
    client.force_login(superuser)
    response = client.post(
        changelist(ModelPrice),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(price.pk),
            "form-0-prompt_price_per_million": "0.15",
            "form-0-completion_price_per_million": "0.60",
            "form-0-currency": "USD",
            "form-0-valid_from_0": "2024-01-01",
            "form-0-valid_from_1": "00:00:00",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    price.refresh_from_db()
    assert price.prompt_price_per_million == Decimal("0.15")


def test_superusers_set_a_users_budget_with_user_autocomplete(client, superuser, alice):
    client.force_login(superuser)
    page = client.get(reverse("admin:conversations_userbudget_add"))
    assert "admin-autocomplete" in page.content.decode()
    response = client.post(
        reverse("admin:conversations_userbudget_add"),
        {"user": alice.pk, "monthly_token_limit": "5000", "monthly_cost_limit": ""},
    )
    assert response.status_code == 302
    assert UserBudget.objects.get(user=alice).monthly_token_limit == 5000
    assert client.get(changelist(UserBudget)).status_code == 200
