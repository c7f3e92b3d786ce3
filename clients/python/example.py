"""clipd from Python: python example.py [IMAGE_FILE]
(server: $CLIPD_ADDR, default localhost:50051; API key, if the server wants one: $CLIPD_API_KEY)."""
import os
import sys


import clipd_client
from tiny_png import RED, square_png

image = open(sys.argv[1], "rb").read() if len(sys.argv) > 1 else square_png(RED)
address = os.environ.get("CLIPD_ADDR", "localhost:50051")
with clipd_client.connect(address, api_key=os.environ.get("CLIPD_API_KEY")) as clip:
    [vector] = clip.embed_images([image])
    [result] = clip.classify([image], labels=["red square", "blue circle", "green star"], top_k=2)
    print("classified:", [(s.label, round(s.probability, 3)) for s in result.scores])
    clip.create_collection("example", if_not_exists=True)
    clip.upsert("example", [
        {"id": "picture", "image": image, "metadata": {"kind": "image"}},
        {"id": "caption", "text": "a blue circle", "metadata": {"kind": "text"}},
    ])
    for hit in clip.search("example", text="a red square", top_k=2):
        print("hit:", hit.id, round(hit.score, 3), hit.metadata)
    try:
        clip.search("no-such-collection", vector=vector)
    except clipd_client.ClipdError as err:
        print("error:", err.code.name, err.details)
