//! `clipd.v1.Clip`: validate, convert, call the engine, map the error.

use std::time::Instant;

use futures_util::future::Either;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{embed_response, inputs};
use super::state::State;
use super::{collections_service, deadline, pb, too_large};
use crate::classify::{ClassifyError, Labels};
use crate::engine::{Engine, EngineError};

pub struct ClipService {
    pub state: State,
}

/// Embeds a request's inputs; past `deadline`, DEADLINE_EXCEEDED, and the inputs still queued
/// are dropped.
async fn embed(
    engine: &Engine,
    request: pb::EmbedRequest,
    deadline: Option<Instant>,
) -> Result<pb::EmbedResponse, EngineError> {
    let work = async {
        let embedded = engine.embed(inputs(request.inputs)?, deadline).await?;
        Ok(embed_response(embedded, &engine.description().name))
    };
    deadline::within(deadline, work).await
}

#[tonic::async_trait]
impl pb::clip_server::Clip for ClipService {
    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let deadline = deadline::of(&request);
        let engine = &self.state.loaded()?.engine;
        let response = embed(engine, request.into_inner(), deadline).await?;
        Ok(Response::new(response))
    }

    type EmbedStreamStream = ReceiverStream<Result<pb::EmbedResponse, Status>>;

    async fn embed_stream(
        &self,
        request: Request<Streaming<pb::EmbedRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let deadline = deadline::of(&request);
        let engine = self.state.loaded()?.engine.clone();
        let limit = self.state.advertised.stream_max_in_flight;
        let (responses, stream) = mpsc::channel(limit);
        tokio::spawn(run_stream(
            engine,
            request.into_inner(),
            responses,
            limit,
            deadline,
        ));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let deadline = deadline::of(&request);
        let loaded = self.state.loaded()?;
        let request = request.into_inner();
        let work = async {
            let labels: Labels = request
                .labels
                .ok_or_else(|| ClassifyError::InvalidRequest("set classifier or label_set".into()))?
                .try_into()?;
            let inputs = inputs(request.inputs)?;
            let top_k = request.top_k as usize;
            loaded
                .classify
                .classify(inputs, labels, top_k, deadline)
                .await
        };
        let classified = deadline::within(deadline, work).await?;
        Ok(Response::new(pb::ClassifyResponse {
            results: classified.results.into_iter().map(Into::into).collect(),
            model: loaded.engine.description().name.clone(),
            timing: Some(classified.timing.into()),
        }))
    }

    async fn get_model_info(
        &self,
        _: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let model = self.state.loaded()?.engine.description();
        let advertised = &*self.state.advertised;
        let (limits, batching) = (&advertised.limits, &advertised.batching);
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(pb::ModelInfo {
            name: model.name.clone(),
            dim: model.dim as u32,
            image_size: model.image_size as u32,
            context_length: model.context_length as u32,
            device: model.device.clone(),
            dtype: model.dtype.clone(),
            max_inputs_per_request: clamp(limits.max_inputs_per_request as u64),
            max_image_bytes: limits.max_image_bytes as u64,
            max_image_pixels: limits.max_image_pixels,
            max_text_bytes: clamp(limits.max_text_bytes as u64),
            max_message_bytes: advertised.max_message_bytes as u64,
            max_batch_size: clamp(batching.max_batch_size as u64),
            max_delay_ms: clamp(batching.max_delay_ms),
            logit_scale: model.scoring.logit_scale(),
            classifiers: advertised.classifiers.clone(),
            max_top_k: clamp(advertised.max_top_k as u64),
            max_items_per_request: clamp(advertised.max_items_per_request as u64),
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let deadline = deadline::of(&request);
        let loaded = self.state.loaded()?;
        let work = collections_service::search(loaded, request.into_inner(), deadline);
        Ok(Response::new(deadline::within(deadline, work).await?))
    }
}

/// Works on up to `limit` messages of a stream at once and answers them in order. While `limit`
/// are in flight, or the client is not reading the answers, the stream is not read: HTTP/2 flow
/// control then holds the client back. The first failure ends the stream with its status, after
/// the answers to the messages before it.
async fn run_stream(
    engine: Engine,
    mut requests: Streaming<pb::EmbedRequest>,
    responses: mpsc::Sender<Result<pb::EmbedResponse, Status>>,
    limit: usize,
    deadline: Option<Instant>,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut received = 0usize;
    let mut reading = true;
    while reading || !in_flight.is_empty() {
        tokio::select! {
            biased;
            () = responses.closed() => return,
            Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                let result: Result<pb::EmbedResponse, Status> = result;
                let failed = result.is_err();
                if responses.send(result).await.is_err() || failed {
                    return;
                }
            }
            message = requests.message(), if reading && in_flight.len() < limit => {
                match message {
                    Ok(Some(request)) => {
                        let index = received;
                        received += 1;
                        in_flight.push_back(Either::Left(embed_message(
                            &engine, request, index, deadline,
                        )));
                    }
                    Ok(None) => reading = false,
                    // A message that cannot be read (over the size limit, say) is answered in its
                    // turn.
                    Err(status) => {
                        reading = false;
                        let status = in_message(received, status);
                        in_flight.push_back(Either::Right(std::future::ready(Err(status))));
                    }
                }
            }
        }
    }
}

/// A stream message's failure, named by its index. tonic's OUT_OF_RANGE for an oversized message
/// becomes INVALID_ARGUMENT, worded as for a unary call.
fn in_message(index: usize, status: Status) -> Status {
    let (code, message) = match too_large::explain(status.message()) {
        Some(text) if status.code() == tonic::Code::OutOfRange => {
            (tonic::Code::InvalidArgument, text)
        }
        _ => (status.code(), status.message().to_owned()),
    };
    Status::new(code, format!("message {index}: {message}"))
}

async fn embed_message(
    engine: &Engine,
    request: pb::EmbedRequest,
    index: usize,
    deadline: Option<Instant>,
) -> Result<pb::EmbedResponse, Status> {
    embed(engine, request, deadline)
        .await
        .map_err(|e| in_message(index, e.into()))
}
