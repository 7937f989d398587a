from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from annotate import views as annotate_views
from config.login import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm

# A body over the upload limit is a 413 with a message, not Django's bare 400.
handler400 = "config.errors.bad_request"

# Both login forms count failures and refuse while throttled (config.login).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("accounts/login/",
         auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Anyone logged in changes their own password; the session stays logged in.
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("healthz", annotate_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("annotate.urls")),
    path("", include("learner.urls")),
]
