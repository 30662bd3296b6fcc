from django.http import HttpRequest

from jobs.ledger import balance_of


def credits(request: HttpRequest) -> dict:
    """The balance in every page's header (one small query)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"credit_balance": balance_of(request.user)}
