from django.contrib import admin

from annotate.models import (
    Annotation,
    Assignment,
    Document,
    Flag,
    GuidelineVersion,
    Label,
    Membership,
    Project,
)


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "overlap", "created_by", "created_at"]
    inlines = [LabelInline, MembershipInline]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "split", "n_annotations", "final_labels"]
    list_filter = ["project", "split"]
    search_fields = ["text", "external_id"]
    raw_id_fields = ["project"]
    readonly_fields = ["text_hash", "rand", "slots_taken", "n_annotations"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "document", "annotator", "labels", "source", "created_at"]
    list_filter = ["source"]
    raw_id_fields = ["document", "annotator", "guideline_version"]


admin.site.register(GuidelineVersion)
admin.site.register(Assignment, list_display=["document", "user", "status", "expires_at"],
                    raw_id_fields=["document", "user", "project"])
admin.site.register(Flag, list_display=["document", "user", "comment", "resolved"],
                    raw_id_fields=["document", "user"])
