"""GuidelineVersion.html: each version's Markdown rendered once and stored, so the pages
that show guidelines stop rendering them per request. Existing versions are rendered here.
"""

from django.db import migrations, models

from annotate.markup import render_markdown


def render_existing(apps, schema_editor):  # type: ignore[no-untyped-def]
    GuidelineVersion = apps.get_model("annotate", "GuidelineVersion")
    # One version at a time (a project may have long guidelines and many versions); the ids
    # first, since SQLite does not isolate a cursor from writes to the table it reads.
    for pk in list(GuidelineVersion.objects.values_list("pk", flat=True)):
        text = GuidelineVersion.objects.values_list("text", flat=True).get(pk=pk)
        GuidelineVersion.objects.filter(pk=pk).update(html=render_markdown(text))


class Migration(migrations.Migration):

    dependencies = [
        ("annotate", "0002_adjudication"),
    ]

    operations = [
        migrations.AddField(
            model_name="guidelineversion",
            name="html",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(render_existing, migrations.RunPython.noop),
    ]
