"""Hostile ids in Django's admin answer with a message or a form error, never a 500.

Django's admin passes some ids from the request to `filter(pk__in=...)` without checking them first:

- `ModelAdmin.response_action` filters by the posted `_selected_action` rows as they are: a non-numeric id raises
  ValueError, one past 64 bits OverflowError (SQLite binds integers as signed 64-bit values).
- `ModelAdmin.get_object` (change, delete and history pages) catches ValueError and ValidationError, not the
  DataError of a text id holding a NUL, which PostgreSQL refuses.
- `ModelAdmin._get_list_editable_queryset` checks the list-edit row ids with `to_python`, which accepts any size.
- `AutocompleteSelect.optgroups` re-renders a refused value with `filter(pk__in=[value])`.
- `ModelMultipleChoiceField._check_values` (a many-to-many field, e.g. Group's permissions) catches the ValueError
  of a non-numeric id but not the OverflowError of one past 64 bits.

Every ModelAdmin of the project mixes in `SafeIdsMixin`, which checks those ids before Django's code sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.core.exceptions import ValidationError
from django.db import models

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
    from django.http import HttpRequest, HttpResponseBase

    _AdminBase = ModelAdmin
    _WidgetBase = AutocompleteSelect
else:
    _AdminBase = _WidgetBase = object

# The range of a signed 64-bit integer: SQLite's INTEGER and PostgreSQL's BIGINT.
MIN_DB_INT = -(2**63)
MAX_DB_INT = 2**63 - 1

NO_SUCH_ROWS = "No action was run: the rows chosen do not exist."


def value_ok(field: models.Field, value: Any) -> bool:
    """Whether `value` is a valid value for `field` that a database query can take: an integer must fit 64 bits."""
    try:
        converted = field.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return False
    if isinstance(converted, str):
        return "\x00" not in converted  # PostgreSQL's text cannot hold a NUL: the query itself would fail
    return not isinstance(converted, int) or MIN_DB_INT <= converted <= MAX_DB_INT


def ids_ok(model: type[models.Model], values: Iterable[Any]) -> bool:
    """Whether every one of `values` is a primary key of `model` that a database query can take."""
    return all(value_ok(model._meta.pk, value) for value in values)


class SafeModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """A ModelMultipleChoiceField that refuses an id of the wrong type or past 64 bits with a validation error."""

    def _check_values(self, value: Any) -> models.QuerySet:
        field = self.queryset.model._meta.get_field(self.to_field_name) if self.to_field_name else None
        field = field or self.queryset.model._meta.pk
        if isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, str | int) and not value_ok(field, item):
                    raise ValidationError(
                        self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": item}
                    )
        return super()._check_values(value)


class _SafeOptgroupsMixin(_WidgetBase):
    """Re-render an autocomplete widget empty when its value is not an id the database can look up."""

    def optgroups(self, name: str, value: list[str], attr: dict[str, Any] | None = None) -> list:
        try:
            return super().optgroups(name, value, attr)
        except (ValueError, OverflowError):
            return super().optgroups(name, [], attr)


class SafeAutocompleteSelect(_SafeOptgroupsMixin, AutocompleteSelect):
    """An AutocompleteSelect whose refused value (a hostile id) renders as no choice instead of a 500."""


class SafeAutocompleteSelectMultiple(_SafeOptgroupsMixin, AutocompleteSelectMultiple):
    """An AutocompleteSelectMultiple whose refused values (hostile ids) render as no choice instead of a 500."""


class SafeIdsMixin(_AdminBase):
    """Mix into a ModelAdmin (before `admin.ModelAdmin`) so hostile row and related ids never reach a query."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> models.Model | None:
        field = self.model._meta.get_field(from_field) if from_field else self.model._meta.pk
        if not value_ok(field, object_id):
            return None  # Django's answer to an id that matches no row
        return super().get_object(request, object_id, from_field)

    def response_action(self, request: HttpRequest, queryset: models.QuerySet) -> HttpResponseBase | None:
        if not ids_ok(self.model, request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)):
            self.message_user(request, NO_SUCH_ROWS, messages.WARNING)
            return None
        return super().response_action(request, queryset)

    def _get_list_editable_queryset(self, request: HttpRequest, prefix: str) -> models.QuerySet:
        if not ids_ok(self.model, self._get_edited_object_pks(request, prefix)):
            # Django's own answer to tampered row ids: the whole queryset, so the formset finds no such row.
            return self.get_queryset(request)
        return super()._get_list_editable_queryset(request, prefix)

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelectMultiple(db_field, self.admin_site, using=kwargs.get("using"))
        kwargs.setdefault("form_class", SafeModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)
