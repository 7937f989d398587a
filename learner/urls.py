from django.urls import path

from learner import views

app_name = "learner"

urlpatterns = [
    path("p/<int:pk>/learner/", views.dashboard, name="dashboard"),
    path("p/<int:pk>/learner/progress/", views.progress, name="progress"),
    path("p/<int:pk>/learner/train/", views.train_now, name="train"),
    path("p/<int:pk>/learner/adapt/", views.adapt, name="adapt"),
    path("p/<int:pk>/learner/rounds/", views.rounds, name="rounds"),
    path("p/<int:pk>/learner/rounds/<int:number>/", views.round_detail, name="round"),
    path("p/<int:pk>/learner/rounds/<int:number>/exports/", views.round_exports,
         name="round_exports"),
    path("p/<int:pk>/learner/rounds/<int:number>/cancel/", views.round_cancel,
         name="round_cancel"),
    path("p/<int:pk>/learner/rounds/<int:number>/final/", views.final_model,
         name="final_model"),
    path("p/<int:pk>/learner/settings/", views.learner_settings, name="settings"),
    path("p/<int:pk>/learner/drift/<int:alert_id>/clear/", views.drift_alert_clear,
         name="drift_clear"),
]
