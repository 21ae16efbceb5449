from __future__ import annotations

from django.urls import path

from examples.django_project import views

urlpatterns = [
    path("users/<int:user_id>", views.user),
    path("reports/<int:report_id>", views.report),
    path("checkout", views.checkout),
    path("stream", views.stream),
]
