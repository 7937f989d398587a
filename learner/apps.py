from django.apps import AppConfig


class LearnerConfig(AppConfig):
    name = "learner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.console import console_defaults

        # Every Labelwise process (the web app and the export worker load models too)
        # starts quiet; the worker commands' --verbose or LABELWISE_VERBOSE=1 undo it.
        console_defaults()
