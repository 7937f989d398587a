# Placeholder: the lead's pages are being written.
from django.http import HttpResponse


def _todo(request, *args, **kwargs):  # type: ignore[no-untyped-def]
    return HttpResponse("not yet", status=501)


project_create = project_overview = project_settings = labels = label_edit = label_delete = _todo
members = member_remove = guidelines = guideline_edit = guideline_version = documents = _todo
import_upload = holdout = export = _todo
