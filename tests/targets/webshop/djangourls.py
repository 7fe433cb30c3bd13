from django.urls import path

from webshop import djangoviews

urlpatterns = [
    path("items/<int:item>", djangoviews.item),
    path("async/items/<int:item>", djangoviews.item_async),
]
