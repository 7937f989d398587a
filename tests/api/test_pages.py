"""The round page's Downloads block: leads queue model exports from it and download
finished ones; other members only see them; strangers get 404."""

from __future__ import annotations

from learner.models import ExportJob


def test_lead_queues_an_export_from_the_round_page(client, lead, project, done_round, tmp_path):
    (tmp_path / "labelwise.json").write_text('{"format_version": 2}')
    done_round.artifact_path = str(tmp_path)
    done_round.save()
    client.force_login(lead)
    page = client.get(f"/p/{project.pk}/learner/rounds/1/").content.decode()
    assert 'id="downloads"' in page and "Export model" in page
    response = client.post(f"/api/p/{project.pk}/rounds/1/export/", {"format": "onnx"})
    assert response.status_code == 302 and response.url.endswith("/learner/rounds/1/")
    job = ExportJob.objects.get()
    assert (job.format, job.status, job.requested_by) == ("onnx", "queued", lead)
    ExportJob.objects.filter(pk=job.pk).update(status="done", path=str(tmp_path / "x.zip"),
                                               size_bytes=2048)
    page = client.get(f"/p/{project.pk}/learner/rounds/1/").content.decode()
    assert f"/api/projects/{project.pk}/exports/{job.pk}/download/" in page


def test_only_leads_queue_exports_from_the_page(client, viewer, stranger, project, done_round):
    client.force_login(viewer)
    page = client.get(f"/p/{project.pk}/learner/rounds/1/").content.decode()
    assert 'id="downloads"' in page and "Export model" not in page
    assert client.post(f"/api/p/{project.pk}/rounds/1/export/").status_code == 403
    client.force_login(stranger)
    assert client.post(f"/api/p/{project.pk}/rounds/1/export/").status_code == 404
    assert not ExportJob.objects.exists()
