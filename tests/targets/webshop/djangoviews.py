"""Django views: a sync one and an async one (run by Django's async_to_sync under its WSGI server)."""

from django.http import JsonResponse

from webshop import work


def item(request, item):
    return JsonResponse(work.get_item_sync(item))


async def item_async(request, item):
    return JsonResponse(await work.get_item(item))
