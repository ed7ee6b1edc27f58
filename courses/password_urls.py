"""Password change and reset (filled in by the hardening work)."""

urlpatterns: list = []
