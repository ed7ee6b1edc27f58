from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User

from config.admin_safety import SafeIdsMixin
from courses.models import (
    Course,
    CourseAsset,
    Enrollment,
    Lesson,
    LessonMark,
    LessonProgress,
    Quiz,
    QuizAttempt,
    RenderedMarkdown,
    Unit,
)


class UnitInline(admin.TabularInline):
    model = Unit
    fields = ("position", "slug", "title", "label", "track")
    extra = 0
    show_change_link = True


@admin.register(Course)
class CourseAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("title", "slug", "unit_label", "content_version", "imported_at")
    search_fields = ("title", "slug")
    readonly_fields = ("content_version", "imported_at")
    inlines = [UnitInline]


@admin.register(Unit)
class UnitAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("title", "course", "position", "slug", "label", "track")
    list_filter = ("course",)
    search_fields = ("title", "slug")
    list_select_related = ("course",)


@admin.register(Lesson)
class LessonAdmin(SafeIdsMixin, admin.ModelAdmin):
    # Content comes from the course's files: edits here would be overwritten by the next import.
    list_display = ("title", "course", "unit", "position", "estimated_minutes")
    list_filter = ("course",)
    search_fields = ("title", "slug", "source_path")
    list_select_related = ("course", "unit__course")
    readonly_fields = ("source_path", "content_hash", "html", "toc")


@admin.register(Quiz)
class QuizAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("key", "lesson", "graded", "max_attempts")
    list_filter = ("graded",)
    search_fields = ("key", "lesson__title")
    list_select_related = ("lesson",)


@admin.register(QuizAttempt)
class QuizAttemptAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("quiz", "user", "score", "max_score", "created_at")
    list_filter = ("quiz__lesson__course",)
    search_fields = ("user__username", "quiz__key")
    list_select_related = ("quiz__lesson", "user")
    readonly_fields = ("quiz", "user", "answers", "score", "max_score", "created_at")

    # Attempts are made by learners taking the quiz; every field is read-only, so an add form could only save a
    # row without its score.
    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(SafeIdsMixin, admin.ModelAdmin):
    # Reviewer and instructor roles are granted here; learners enroll themselves on the course page.
    list_display = ("user", "course", "role", "created_at")
    list_filter = ("role", "course")
    list_editable = ("role",)
    search_fields = ("user__username", "course__title")
    list_select_related = ("user", "course")
    autocomplete_fields = ("user",)


@admin.register(LessonProgress)
class LessonProgressAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("user", "lesson", "completed_at")
    search_fields = ("user__username", "lesson__title")
    list_select_related = ("user", "lesson")


@admin.register(RenderedMarkdown)
class RenderedMarkdownAdmin(SafeIdsMixin, admin.ModelAdmin):
    list_display = ("content_hash", "created_at")
    readonly_fields = ("content_hash", "html", "toc", "blocks", "created_at")

    # A cache the course import fills; every field is read-only, its key too, so an add form could only save a
    # row with an empty key.
    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LessonMark)
class LessonMarkAdmin(SafeIdsMixin, admin.ModelAdmin):
    # A reader's opened answers and ticks, written by the lesson page's script: shown for support, never made here.
    list_display = ("user", "lesson", "key", "updated_at")
    search_fields = ("user__username", "lesson__title", "key")
    list_select_related = ("user", "lesson")
    readonly_fields = ("user", "lesson", "key", "value", "updated_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CourseAsset)
class CourseAssetAdmin(SafeIdsMixin, admin.ModelAdmin):
    # Written by the course import and named by the digest of its bytes: editing one would break that name.
    list_display = ("sha256", "media_type", "size", "created_at")
    list_filter = ("media_type",)
    search_fields = ("sha256",)
    fields = ("sha256", "media_type", "size", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# django.contrib.auth's own admins, with hostile ids refused the same way (its admin module registers them first).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(SafeIdsMixin, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(SafeIdsMixin, auth_admin.GroupAdmin):
    pass
