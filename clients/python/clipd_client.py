"""A small Python client for clipd (grpcio + stubs generated from proto/clipd/v1/clipd.proto).

Copy this file next to the generated stubs (clients/python/generate.sh writes them to gen/):

    import clipd_client
    with clipd_client.connect("localhost:50051") as clip:
        [vec] = clip.embed_texts(["a photo of a red circle"])

Inputs: a `str` is a text and `bytes` an encoded image file (JPEG, PNG, ...). Every gRPC error is
raised as `ClipdError`, which carries the status code (`err.code`, a `grpc.StatusCode`).
"""

import os
import sys
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import grpc

# The generated stubs live in gen/ beside this file (clients/python/generate.sh).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from clipd.v1 import clipd_pb2 as pb  # noqa: E402
from clipd.v1 import clipd_pb2_grpc as pb_grpc  # noqa: E402

InputLike = Union[str, bytes]


class ClipdError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Score(NamedTuple):
    label: str
    probability: float
    similarity: float


class Classification(NamedTuple):
    scores: List[Score]  # best first
    flagged: List[str]


class Hit(NamedTuple):
    id: str
    score: float  # cosine similarity
    metadata: Dict[str, str]


def _input(value: InputLike) -> pb.Input:
    if isinstance(value, str):
        return pb.Input(text=value)
    if isinstance(value, (bytes, bytearray)):
        return pb.Input(image=bytes(value))
    raise TypeError(f"an input is a str (text) or bytes (an image file), not {type(value).__name__}")


def _item(item: Mapping) -> pb.Item:
    """{"id": ..., one of "text" / "image" / "vector": ..., "metadata": {...}} -> Item."""
    content = [k for k in ("text", "image", "vector") if item.get(k) is not None]
    if len(content) != 1:
        raise ValueError(f"item {item.get('id')!r}: give exactly one of text, image, vector")
    kind = content[0]
    value = pb.Vector(values=item[kind]) if kind == "vector" else item[kind]
    return pb.Item(id=item["id"], metadata=item.get("metadata") or {}, **{kind: value})


class Client:
    """Wraps a channel to one clipd server. Use `connect()`; close it (or use `with`) when done."""

    def __init__(self, channel: grpc.Channel, api_key: Optional[str] = None, timeout: float = 30.0):
        self.channel = channel
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._clip = pb_grpc.ClipStub(channel)
        self._collections = pb_grpc.CollectionsStub(channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ClipdError(err.code(), err.details()) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Clip: inference and search.

    def model_info(self) -> pb.ModelInfo:
        return self._call(self._clip.GetModelInfo, pb.GetModelInfoRequest())

    def embed(self, inputs: Iterable[InputLike]) -> List[List[float]]:
        """One unit-length embedding per input (texts and images mixed), in order."""
        response = self._call(self._clip.Embed, pb.EmbedRequest(inputs=[_input(i) for i in inputs]))
        return [list(e.values) for e in response.embeddings]

    def embed_texts(self, texts: Iterable[str]) -> List[List[float]]:
        return self.embed(list(texts))

    def embed_images(self, images: Iterable[bytes]) -> List[List[float]]:
        return self.embed([bytes(i) for i in images])

    def classify(
        self,
        inputs: Iterable[InputLike],
        labels: Optional[Sequence[str]] = None,
        classifier: Optional[str] = None,
        top_k: int = 0,
        templates: Sequence[str] = (),
    ) -> List[Classification]:
        """Zero-shot classification against `labels` (with optional prompt `templates`, each with
        "{}") or a classifier configured on the server by name. `top_k` 0: every label."""
        if (labels is None) == (classifier is None):
            raise ValueError("give labels or classifier, not both")
        request = pb.ClassifyRequest(inputs=[_input(i) for i in inputs], top_k=top_k)
        if classifier is not None:
            request.classifier = classifier
        else:
            request.label_set.labels.extend(labels)
            request.label_set.templates.extend(templates)
        response = self._call(self._clip.Classify, request)
        return [
            Classification(
                [Score(s.label, s.probability, s.similarity) for s in r.scores], list(r.flagged)
            )
            for r in response.results
        ]

    def search(
        self,
        collection: str,
        *,
        text: Optional[str] = None,
        image: Optional[bytes] = None,
        vector: Optional[Sequence[float]] = None,
        id: Optional[str] = None,
        top_k: int = 10,
        filter: Optional[Mapping[str, str]] = None,
        ef_search: int = 0,
    ) -> List[Hit]:
        """The items nearest to one query (text, image, vector or the id of an item), best first;
        `filter` keeps items whose metadata has every given key with that value."""
        query = {"text": text, "image": image, "id": id}
        query = {k: v for k, v in query.items() if v is not None}
        if vector is not None:
            query["vector"] = pb.Vector(values=vector)
        if len(query) != 1:
            raise ValueError("give exactly one of text, image, vector, id")
        request = pb.SearchRequest(
            collection=collection, top_k=top_k, filter=filter or {}, ef_search=ef_search, **query
        )
        response = self._call(self._clip.Search, request)
        return [Hit(h.id, h.score, dict(h.metadata)) for h in response.hits]

    # Collections: writes.

    def create_collection(self, name: str, m: int = 0, ef_construction: int = 0,
                          ef_search: int = 0, if_not_exists: bool = False) -> pb.CollectionInfo:
        """With if_not_exists, a collection already there is described instead of refused."""
        request = pb.CreateCollectionRequest(
            name=name, m=m, ef_construction=ef_construction, ef_search=ef_search,
            if_not_exists=if_not_exists,
        )
        return self._call(self._collections.CreateCollection, request).collection

    def drop_collection(self, name: str) -> None:
        self._call(self._collections.DropCollection, pb.DropCollectionRequest(name=name))

    def list_collections(self) -> List[pb.CollectionInfo]:
        return list(self._call(self._collections.ListCollections,
                               pb.ListCollectionsRequest()).collections)

    def upsert(self, collection: str, items: Iterable[Mapping]) -> Tuple[int, int]:
        """Adds or replaces items, all or nothing. Each item is a dict: "id", exactly one of
        "text" (str), "image" (bytes) or "vector" (floats), and optional "metadata" (str -> str).
        Returns (inserted, replaced)."""
        request = pb.UpsertRequest(collection=collection, items=[_item(i) for i in items])
        response = self._call(self._collections.Upsert, request)
        return response.inserted, response.replaced

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        request = pb.DeleteRequest(collection=collection, ids=list(ids))
        return self._call(self._collections.Delete, request).deleted


def connect(
    target: str,
    api_key: Optional[str] = None,
    root_certificates: Optional[bytes] = None,
    timeout: float = 30.0,
) -> Client:
    """A client for the server at `target` ("host:port"). TLS when `root_certificates` (PEM bytes)
    are given, else plaintext. `api_key` goes with every call as `authorization: Bearer KEY`.
    `timeout` is each call's deadline in seconds."""
    options = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]
    if root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    return Client(channel, api_key=api_key, timeout=timeout)
