# ExportJob now belongs to the learner (learner 0007 takes it over, same table). Here it
# leaves api's migration state only; the table stays. Its content type follows it, so
# permissions granted on it keep pointing at the model.

from django.db import migrations


def content_type_move(apps, schema_editor, src='api', dst='learner'):
    ContentType = apps.get_model('contenttypes', 'ContentType')
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=dst, model='exportjob').exists():
        ContentType.objects.using(db).filter(app_label=src, model='exportjob').update(
            app_label=dst)


def content_type_back(apps, schema_editor):
    content_type_move(apps, schema_editor, src='learner', dst='api')


class Migration(migrations.Migration):

    dependencies = [
        ('api', '0002_token_scope_and_expiry'),
        ('learner', '0007_exportjob_from_api'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ExportJob')],
            database_operations=[],
        ),
        migrations.RunPython(content_type_move, content_type_back),
    ]
