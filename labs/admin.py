from django.contrib import admin

from config.admin_safety import SafeIdsMixin
from labs.models import ApiToken, BlobTree, CheckResult, GradingRun, Lab, Revision


class ReadOnlyAdmin(SafeIdsMixin, admin.ModelAdmin):
    """Grading records are evidence: staff may look and delete, never edit them into a different story."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Lab)
class LabAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("title", "course", "unit", "slug", "max_revisions", "cooldown_seconds", "due")
    list_filter = ("course",)
    search_fields = ("title", "slug")
    list_select_related = ("course", "unit__course")
    readonly_fields = Lab.IMPORTED_FIELDS

    # The policy lives in the lab's spec (lab.yaml); these columns read it from there.
    @admin.display(description="max revisions")
    def max_revisions(self, lab: Lab) -> int | None:
        return lab.labspec.policy.max_revisions

    @admin.display(description="cooldown (s)")
    def cooldown_seconds(self, lab: Lab) -> int:
        return lab.labspec.policy.cooldown_seconds

    @admin.display(description="due")
    def due(self, lab: Lab):
        return lab.labspec.policy.due


class GradingRunInline(admin.TabularInline):
    model = GradingRun
    fields = ("attempt", "phase", "outcome", "worker", "started_at", "results_stored_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ("lab", "user", "number", "state", "score", "max_score", "created_at", "is_late")
    list_filter = ("state", "lab__course", "is_late")
    search_fields = ("user__username", "lab__slug", "tree_sha256")
    list_select_related = ("lab", "user")
    inlines = [GradingRunInline]


class CheckResultInline(admin.TabularInline):
    model = CheckResult
    fields = ("position", "check_id", "category", "status", "points", "max_points", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(GradingRun)
class GradingRunAdmin(ReadOnlyAdmin):
    list_display = ("revision", "attempt", "phase", "outcome", "worker", "started_at")
    list_filter = ("outcome", "phase")
    list_select_related = ("revision__lab", "revision__user")
    inlines = [CheckResultInline]


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = ("check_id", "run", "category", "status", "points", "max_points")
    list_filter = ("status", "category")
    search_fields = ("check_id", "kind")
    list_select_related = ("run__revision__lab", "run__revision__user")


@admin.register(ApiToken)
class ApiTokenAdmin(SafeIdsMixin, admin.ModelAdmin):
    # The secret is never stored, only its hash: staff can revoke (delete) but not read a token.
    list_display = ("user", "prefix", "created_at", "last_used_at")
    search_fields = ("user__username", "prefix")
    readonly_fields = ("key_sha256", "prefix", "created_at", "last_used_at")


@admin.register(BlobTree)
class BlobTreeAdmin(ReadOnlyAdmin):
    """Stored trees (labs.blobs), to look one up by digest; never deleted here: revisions and labs need them."""

    list_display = ("kind", "digest", "total_bytes", "created_at")
    list_filter = ("kind",)
    search_fields = ("digest",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
