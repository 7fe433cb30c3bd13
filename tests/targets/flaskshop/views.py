from flask import Flask, abort, jsonify, request

from . import pricing, repo

app = Flask("flaskshop")


@app.route("/items/<int:item_id>")
def get_item(item_id):
    try:
        item = repo.find(item_id)
    except KeyError:
        abort(404)
    cents = pricing.discount(item["cents"], request.args.get("code", ""))
    item["total"] = pricing.with_tax(cents)
    return jsonify(item)


@app.route("/health")
def health():
    return "ok"
