from django.apps import AppConfig


class LearnerConfig(AppConfig):
    name = "learner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate.providers import prediction_source_set
        from config.console import console_defaults
        from learner.predictions import LearnerPredictions

        # Every Labelwise process (the web app and the export worker load models too)
        # starts quiet; the worker commands' --verbose or LABELWISE_VERBOSE=1 undo it.
        console_defaults()
        # The queue, the documents list and the review pages read the rounds' predictions
        # through this; annotate never imports the learner.
        prediction_source_set(LearnerPredictions())
