# ExportJob moves from the api app to the learner (api holds only the REST layer). The
# table keeps its name, api_exportjob, and is not touched: this migration only tells the
# learner's migration state that the model is now its own; api 0003 removes it from api's.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('learner', '0006_monitoring_and_groups'),
        # The table was created by api 0001 and must exist before the learner owns it,
        # so that later learner migrations altering it find it on a fresh database.
        ('api', '0002_token_scope_and_expiry'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ExportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('format', models.CharField(choices=[('hf', 'Hugging Face folder (safetensors)'), ('onnx', 'ONNX (float32)'), ('onnx-int8', 'ONNX, int8-quantized')], max_length=10)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=10)),
                        ('path', models.CharField(blank=True, max_length=500)),
                        ('size_bytes', models.BigIntegerField(blank=True, null=True)),
                        ('error', models.TextField(blank=True)),
                        ('worker', models.CharField(blank=True, max_length=200)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('round', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='export_jobs', to='learner.round')),
                    ],
                    options={
                        'db_table': 'api_exportjob',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['status', 'created_at'], name='export_queue_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
