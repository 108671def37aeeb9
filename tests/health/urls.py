from django.urls import include, path

urlpatterns = [path("redis/", include("django_redis_resilience.urls"))]
