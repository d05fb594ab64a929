"""Every wire model of the HTTP service, in one place; the OpenAPI document is generated from these.

Lenient where real clients are sloppy: unknown fields are ignored, explicit ``null`` means "the default", booleans
and integers sent as strings (``"true"``, ``"3"``) are accepted (pydantic's lax mode). Strict where a mistake would
give wrong answers: an empty query or ``top_n < 1`` is a 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _non_empty_query(value: str) -> str:
    if not value.strip():
        raise ValueError("query is empty: send the question or search text to rank the documents against")
    return value


# Documented in the schema, checked by hand: a blank query is a 422 with a clear message, an empty list a 400.
QUERY_FIELD = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"}, description="The search text.")


def _non_empty_list(description: str) -> Any:
    return Field(json_schema_extra={"minItems": 1}, description=description)


class DocumentObject(WireModel):
    """A document given as an object, as Cohere v1 and Jina allow."""

    text: str


Document = str | DocumentObject


class CohereRerankRequest(WireModel):
    """Cohere v1/v2 and Jina rerank body (also what Dify, RAGFlow, FastGPT, LiteLLM and LangChain send)."""

    model: str | None = Field(None, description="The served model's name or an alias (GET /v1/models); another "
                              "name is a 404 unless the service accepts any name. Omitted: the served model.")
    query: str = QUERY_FIELD
    documents: list[Document] = _non_empty_list("Documents to rank, as strings or {text} objects.")
    top_n: int | None = Field(None, ge=1, description="Keep the best n results; all when omitted.")
    return_documents: bool | None = Field(None, description="Include each document's text in its result.")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Accepted; documents are cut to the model's max_length in any case."
    )
    max_chunks_per_doc: int | None = Field(None, ge=1, description="Accepted (Xinference); ignored.")
    return_len: bool | None = Field(None, description="Accepted (Xinference); ignored.")
    raw_scores: bool | None = Field(
        None, description="crossrank extension: also return each result's raw logit as raw_score."
    )
    return_read_span: bool | None = Field(
        None, description="crossrank extension: also say which characters of each document the model read, as "
        "read_span (long documents are cut, or split into windows of which the best counts)."
    )

    _check_query = field_validator("query")(_non_empty_query)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TEIRerankRequest(WireModel):
    """text-embeddings-inference rerank body."""

    query: str = QUERY_FIELD
    texts: list[str] = _non_empty_list("Texts to rank.")
    raw_scores: bool | None = Field(None, description="Return the model's logits instead of sigmoid scores.")
    return_text: bool | None = Field(None, description="Include each text in its result.")
    truncate: bool | None = Field(None, description="Cut over-long texts (default); false makes them a 413.")
    truncation_direction: Literal["Right"] | None = Field(
        None, description="Only Right (TEI's default) is supported: texts keep their beginning."
    )

    _check_query = field_validator("query")(_non_empty_query)


def _rerank_body_kind(body: Any) -> str:
    if isinstance(body, dict):
        return "tei" if "texts" in body else "cohere"
    return "tei" if isinstance(body, TEIRerankRequest) else "cohere"


AnyRerankRequest = Annotated[
    Annotated[TEIRerankRequest, Tag("tei")] | Annotated[CohereRerankRequest, Tag("cohere")],
    Discriminator(_rerank_body_kind),
]


class ResultDocument(WireModel):
    text: str


class ReadSpan(WireModel):
    """The part of a document the model read: characters ``[start, end)`` (Unicode code points)."""

    start: int
    end: int
    tokens: int = Field(description="Document tokens in that part.")
    window: int = Field(description="Which window (0-based) scored best, when long documents are split.")
    windows: int = Field(description="How many windows the document was split into; 1 when it is cut.")


class RerankResultItem(WireModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="Sigmoid of the model's logit, in [0, 1].")
    document: ResultDocument | None = Field(None, description="Present only when return_documents was true.")
    raw_score: float | None = Field(None, description="The model's logit; present only when raw_scores was true.")
    read_span: ReadSpan | None = Field(None, description="Present only when return_read_span was true.")


class Usage(WireModel):
    prompt_tokens: int
    total_tokens: int


class ApiVersion(WireModel):
    version: str = "2"


class BilledUnits(WireModel):
    search_units: int


class Tokens(WireModel):
    input_tokens: int
    output_tokens: int = 0


class Meta(WireModel):
    api_version: ApiVersion = Field(default_factory=ApiVersion)
    billed_units: BilledUnits
    tokens: Tokens


class RerankResponse(WireModel):
    """One response shape that Cohere v1/v2, Jina, LangChain, LiteLLM, Dify, RAGFlow and FastGPT all read."""

    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[RerankResultItem]
    usage: Usage
    meta: Meta


class TEIRank(WireModel):
    index: int
    score: float = Field(description="Sigmoid score in [0, 1], or the raw logit when raw_scores was true.")
    text: str | None = Field(None, description="Present only when return_text was true.")


class ErrorResponse(WireModel):
    """Every error: what went wrong, and a short machine-readable kind (TEI's shape)."""

    error: str
    error_type: str


class HealthResponse(WireModel):
    status: Literal["ok", "unavailable"]


class RerankerType(WireModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class ModelType(WireModel):
    reranker: RerankerType


class InfoResponse(WireModel):
    """TEI-style /info (Dify's TEI provider reads ``model_type.reranker``) plus crossrank's own limits."""

    model_id: str
    model_dtype: str
    model_device: str
    backend: str
    model_type: ModelType
    max_input_length: int
    max_batch_tokens: int
    max_client_batch_size: int
    max_queued_pairs: int
    payload_limit: int
    version: str


class ModelCard(WireModel):
    """OpenAI-style model entry; ``model_type: "rerank"`` is what Dify's Xinference provider checks."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "crossrank"
    model_type: Literal["rerank"] = "rerank"
    max_input_length: int


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
