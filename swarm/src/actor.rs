//! The task that owns the swarm. See the module docs of `swarm` for the picture.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    PeerId, Swarm, autonat,
    gossipsub::{self, IdentTopic, MessageAcceptance},
    identify,
    kad::{
        self, GetProvidersOk, GetRecordOk, InboundRequest, QueryId, QueryResult, Quorum, Record,
        store::RecordStore,
    },
    mdns, request_response,
    swarm::SwarmEvent,
};
use streamgate_protocol::{
    Announcement, ContentHash, SignedNodeRecord, worker::SignedWorkerAdvert,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use streamgate_protocol::bounded::BoundedMap;

use crate::{
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL},
    daemon::unix_now,
    handle::{Command, Provider, ProviderAnswer, SwarmStatus},
    identity::node_key_of,
    jobs::InboundJob,
    nat::{self, NatAction, NatState},
    records,
};

/// Concurrent `start_providing` queries; the rest wait in a queue (a node restarting with
/// many blobs re-announces them gradually instead of flooding its neighbours).
const MAX_PROVIDE_QUERIES: usize = 16;
/// Verified node records kept in memory.
const RECORD_CACHE: usize = 4096;
/// Content ids whose providers are cached (from DHT answers and gossip announcements), and
/// providers kept per id.
const PROVIDER_CACHE: usize = 4096;
const PROVIDERS_PER_HASH: usize = 20;
/// Workers whose adverts are kept (the newest of each).
const WORKER_CACHE: usize = 4096;
/// A cached provider list older than this is looked up in the DHT again before use.
const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(300);

/// The gossip topics every daemon subscribes to.
pub(crate) struct Topics {
    pub(crate) announce: IdentTopic,
    pub(crate) workers: IdentTopic,
}

pub(super) struct Actor {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    topics: Topics,
    has_bootstrap: bool,
    joined: bool,
    own_record: Option<SignedNodeRecord>,
    provided: HashSet<ContentHash>,
    provide_queue: VecDeque<ContentHash>,
    provide_queries: HashMap<QueryId, ContentHash>,
    provider_queries: HashMap<QueryId, ProviderQuery>,
    provider_query_of: HashMap<ContentHash, QueryId>,
    record_queries: HashMap<QueryId, RecordQuery>,
    record_cache: BoundedMap<PeerId, SignedNodeRecord>,
    providers: BoundedMap<ContentHash, CachedProviders>,
    rejected: u64,
    accepted_announcements: u64,
    nat: NatState,
    workers: BoundedMap<PeerId, SignedWorkerAdvert>,
    inbound_jobs: mpsc::Sender<InboundJob>,
    /// Replies to offers sent, by request.
    job_replies:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>>,
    /// Offers received, waiting for the node's answer.
    job_answers: FuturesUnordered<JobAnswer>,
}

/// The node's answer to a job offer, with the channel it goes back on.
type JobAnswer = BoxFuture<'static, (Vec<u8>, request_response::ResponseChannel<Vec<u8>>)>;

struct ProviderQuery {
    hash: ContentHash,
    found: Vec<PeerId>,
    replies: Vec<oneshot::Sender<ProviderAnswer>>,
}

/// Providers of one content id, as last learned.
struct CachedProviders {
    peers: Vec<PeerId>,
    learned_at: Instant,
}

impl CachedProviders {
    fn add(&mut self, peer: PeerId, now: Instant) {
        if !self.peers.contains(&peer) {
            if self.peers.len() >= PROVIDERS_PER_HASH {
                self.peers.remove(0);
            }
            self.peers.push(peer);
        }
        self.learned_at = now;
    }
}

struct RecordQuery {
    peer: PeerId,
    replies: Vec<oneshot::Sender<Option<SignedNodeRecord>>>,
}

impl Actor {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        topics: Topics,
        has_bootstrap: bool,
        nat: NatState,
        inbound_jobs: mpsc::Sender<InboundJob>,
    ) -> Self {
        Self {
            swarm,
            commands,
            topics,
            has_bootstrap,
            joined: false,
            own_record: None,
            provided: HashSet::new(),
            provide_queue: VecDeque::new(),
            provide_queries: HashMap::new(),
            provider_queries: HashMap::new(),
            provider_query_of: HashMap::new(),
            record_queries: HashMap::new(),
            record_cache: BoundedMap::new(RECORD_CACHE),
            providers: BoundedMap::new(PROVIDER_CACHE),
            rejected: 0,
            accepted_announcements: 0,
            nat,
            workers: BoundedMap::new(WORKER_CACHE),
            inbound_jobs,
            job_replies: HashMap::new(),
            job_answers: FuturesUnordered::new(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Shutdown(reply)) => {
                        self.close_all();
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_event(event),
                Some((answer, channel)) = self.job_answers.next(), if !self.job_answers.is_empty() => {
                    // The offerer may have gone; nothing to do then.
                    let _ = self.swarm.behaviour_mut().jobs.send_response(channel, answer);
                }
            }
        }
    }

    fn on_job_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (tx, rx) = oneshot::channel();
                let job = InboundJob {
                    peer,
                    offer: request,
                    reply: tx,
                };
                let refusal = |reason: &str| {
                    streamgate_protocol::job::JobReply::Refused(reason.into()).encode()
                };
                match self.inbound_jobs.try_send(job) {
                    Ok(()) => {
                        let busy = refusal("the worker dropped the job without an answer");
                        self.job_answers
                            .push(async move { (rx.await.unwrap_or(busy), channel) }.boxed());
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .jobs
                            .send_response(channel, refusal("busy: too many offers waiting"));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .jobs
                            .send_response(channel, refusal("this node takes no jobs"));
                    }
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.job_replies.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.job_replies.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "job offer failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn close_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Provide(hash) => {
                if self.provided.insert(hash) {
                    // Findable through this node at once: a lookup that reaches us gets the
                    // entry even while the walk that replicates it waits its turn (walks
                    // that meet dead peers take seconds).
                    let me = *self.swarm.local_peer_id();
                    self.store_provider(kad::ProviderRecord::new(
                        records::blob_provider_key(&hash),
                        me,
                        Vec::new(),
                    ));
                    self.provide_queue.push_back(hash);
                    self.pump_provides();
                }
            }
            Command::FindProviders {
                hash,
                refresh,
                reply,
            } => self.find_providers(hash, refresh, reply),
            Command::FindNodeRecord { peer, reply } => self.find_node_record(peer, reply),
            Command::PublishNodeRecord(record) => {
                self.own_record = Some(record);
                self.put_own_record();
            }
            Command::Announce(announcement) => {
                let topic = self.topics.announce.clone();
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, announcement.encode())
                {
                    // No subscribed peer yet is normal for a lone node; the DHT still has it.
                    tracing::debug!(hash = %announcement.hash.short(), "announcement not gossiped: {e}");
                }
            }
            Command::AdvertiseWorker(advert) => {
                let me = *self.swarm.local_peer_id();
                let topic = self.topics.workers.clone();
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, advert.encode())
                {
                    tracing::debug!("worker advert not gossiped: {e}");
                }
                self.workers.insert(me, advert);
            }
            Command::Workers(reply) => {
                let _ = reply.send(self.live_workers());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::OfferJob { peer, offer, reply } => {
                let id = self.swarm.behaviour_mut().jobs.send_request(&peer, offer);
                self.job_replies.insert(id, reply);
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn status(&mut self) -> SwarmStatus {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let routing_table_peers = kad.kbuckets().map(|b| b.num_entries()).sum();
        let dht_mode = kad.mode().to_string();
        SwarmStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            connected_peers: self.swarm.connected_peers().count(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            dht_mode,
            routing_table_peers,
            provided_keys: self.provided.len(),
            node_records_cached: self.record_cache.len(),
            provider_hints: self.providers.len(),
            rejected_messages: self.rejected,
            accepted_announcements: self.accepted_announcements,
            public_addrs: self
                .swarm
                .external_addresses()
                .filter(|a| !nat::is_relayed(a))
                .map(|a| a.to_string())
                .collect(),
            relayed_addrs: self
                .swarm
                .external_addresses()
                .filter(|a| nat::is_relayed(a))
                .map(|a| a.to_string())
                .collect(),
            autonat: streamgate_api::v1::AutonatStatus {
                probes_ok: self.nat.probes_ok,
                probes_failed: self.nat.probes_failed,
                last_error: self.nat.last_probe_error.clone(),
            },
        }
    }

    fn on_autonat(&mut self, event: autonat::v2::client::Event) {
        let result = event.result.map_err(|e| e.to_string());
        tracing::debug!(addr = %event.tested_addr, server = %event.server, ?result, "AutoNAT probe");
        let action = self.nat.on_probe(result, self.swarm.external_addresses());
        self.apply(action);
    }

    /// Confirmed external addresses changed: the DHT mode follows (when `auto`), and a
    /// reservation is released once a direct address works.
    fn on_external_addrs_changed(&mut self, confirmed: Option<&libp2p::Multiaddr>) {
        if let Some(addr) = confirmed {
            let action = self.nat.on_confirmed(addr);
            self.apply(action);
        }
        if self.nat.auto_dht_mode() {
            let mode = nat::dht_mode_for(self.swarm.external_addresses());
            let kad = &mut self.swarm.behaviour_mut().kad;
            if kad.mode() != mode {
                tracing::info!(%mode, "DHT mode follows the confirmed addresses");
                kad.set_mode(Some(mode));
            }
        }
    }

    fn apply(&mut self, action: NatAction) {
        match action {
            NatAction::None => {}
            NatAction::Reserve(circuit) => match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::info!(relay = %circuit, "not reachable directly (AutoNAT); reserving a relay slot");
                    self.nat.reserving(id, circuit);
                }
                Err(e) => tracing::warn!(relay = %circuit, "cannot reserve a relay slot: {e}"),
            },
            NatAction::Release(id) => {
                tracing::info!("a direct address is confirmed; releasing the relay reservation");
                self.swarm.remove_listener(id);
            }
        }
    }

    fn store_provider(&mut self, record: kad::ProviderRecord) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .add_provider(record)
        {
            tracing::debug!("provider store full: {e}");
        }
    }

    fn pump_provides(&mut self) {
        while self.provide_queries.len() < MAX_PROVIDE_QUERIES {
            let Some(hash) = self.provide_queue.pop_front() else {
                break;
            };
            match self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(records::blob_provider_key(&hash))
            {
                Ok(id) => {
                    self.provide_queries.insert(id, hash);
                }
                Err(e) => tracing::warn!(hash = %hash.short(), "cannot record provider entry: {e}"),
            }
        }
    }

    fn put_own_record(&mut self) {
        let Some(own) = &self.own_record else {
            return;
        };
        let key = records::node_record_key(self.swarm.local_peer_id());
        let record = Record::new(key, own.encode());
        self.record_cache
            .insert(*self.swarm.local_peer_id(), own.clone());
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, Quorum::One)
        {
            tracing::warn!("cannot store own node record: {e}");
        }
    }

    /// After joining the network: tell it who we are and what we hold.
    fn republish_all(&mut self) {
        self.put_own_record();
        self.provide_queue = self.provided.iter().copied().collect();
        self.pump_provides();
    }

    /// Answers from the cache when it holds fresh providers (unless `refresh`), else walks
    /// the DHT and answers with the first providers found.
    fn find_providers(
        &mut self,
        hash: ContentHash,
        refresh: bool,
        reply: oneshot::Sender<ProviderAnswer>,
    ) {
        let now = Instant::now();
        if !refresh
            && let Some(cached) = self.providers.get(&hash)
            && !cached.peers.is_empty()
            && now.duration_since(cached.learned_at) < PROVIDER_CACHE_TTL
        {
            let peers = cached.peers.clone();
            let _ = reply.send(self.answer(&peers, true));
            return;
        }
        if let Some(id) = self.provider_query_of.get(&hash)
            && let Some(query) = self.provider_queries.get_mut(id)
        {
            query.replies.push(reply);
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(records::blob_provider_key(&hash));
        self.provider_query_of.insert(hash, id);
        self.provider_queries.insert(
            id,
            ProviderQuery {
                hash,
                found: Vec::new(),
                replies: vec![reply],
            },
        );
    }

    /// The providers among `peers` other than this node, with the records already known.
    fn answer(&self, peers: &[PeerId], from_cache: bool) -> ProviderAnswer {
        let me = *self.swarm.local_peer_id();
        ProviderAnswer {
            providers: peers
                .iter()
                .filter(|p| **p != me)
                .map(|peer| Provider {
                    peer: *peer,
                    record: self.record_cache.get(peer).cloned(),
                })
                .collect(),
            from_cache,
        }
    }

    fn remember_providers(&mut self, hash: ContentHash, peers: &[PeerId]) {
        let now = Instant::now();
        match self.providers.get_mut(&hash) {
            Some(cached) => {
                for peer in peers {
                    cached.add(*peer, now);
                }
            }
            None => self.providers.insert(
                hash,
                CachedProviders {
                    peers: peers.iter().copied().take(PROVIDERS_PER_HASH).collect(),
                    learned_at: now,
                },
            ),
        }
    }

    fn answer_providers(&mut self, id: QueryId) {
        let Some(query) = self.provider_queries.remove(&id) else {
            return;
        };
        self.provider_query_of.remove(&query.hash);
        if !query.found.is_empty() {
            self.remember_providers(query.hash, &query.found);
        }
        let answer = self.answer(&query.found, false);
        for reply in query.replies {
            let _ = reply.send(answer.clone());
        }
    }

    fn find_node_record(&mut self, peer: PeerId, reply: oneshot::Sender<Option<SignedNodeRecord>>) {
        if let Some(record) = self.record_cache.get(&peer) {
            let _ = reply.send(Some(record.clone()));
            return;
        }
        let key = records::node_record_key(&peer);
        let stored = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .get(&key)
            .map(|r| r.value.clone());
        if let Some(value) = stored
            && let Ok(record) = records::validate_put(&key, &value, unix_now())
        {
            self.record_cache.insert(peer, record.clone());
            let _ = reply.send(Some(record));
            return;
        }
        if let Some(query) = self.record_queries.values_mut().find(|q| q.peer == peer) {
            query.replies.push(reply);
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_record(key);
        self.record_queries.insert(
            id,
            RecordQuery {
                peer,
                replies: vec![reply],
            },
        );
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let check = if message.topic == self.topics.workers.hash() {
                    Self::check_worker_advert
                } else {
                    Self::check_announcement
                };
                let acceptance = match check(self, &message) {
                    Ok(()) => MessageAcceptance::Accept,
                    Err(reason) => {
                        self.rejected += 1;
                        tracing::debug!(from = %propagation_source, "rejected gossip message: {reason}");
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                // Relayed addresses stay out of the routing table (see `nat`).
                for addr in info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !nat::is_relayed(a))
                {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(%peer_id, "connected");
                if !self.joined && self.has_bootstrap {
                    // First contact: walk the DHT so our routing table fills, then publish.
                    if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                        tracing::debug!("kad bootstrap: {e}");
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } if !matches!(
                cause,
                Some(libp2p::swarm::ConnectionError::KeepAliveTimeout)
            ) =>
            {
                // The peer went away (closed, reset, or stopped answering pings), not merely
                // idle: forget it, so that nobody is sent to it by our DHT answers. Every
                // lookup that meets a dead peer waits out a dial timeout.
                tracing::debug!(%peer_id, ?cause, "peer gone; out of the routing table");
                self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(event)) => self.on_autonat(event),
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(event)) => self.on_job_event(event),
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                self.on_external_addrs_changed(Some(&address));
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                self.on_external_addrs_changed(None);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let was_reservation = self.nat.on_listener_closed(listener_id);
                if was_reservation {
                    tracing::info!(
                        ?reason,
                        "relay reservation ended; the next failed AutoNAT probe asks another relay"
                    );
                }
            }
            _ => {}
        }
    }

    fn check_announcement(&mut self, message: &gossipsub::Message) -> Result<(), String> {
        let author = message.source.ok_or("announcement has no author")?;
        let announcement =
            Announcement::decode_verified(&message.data, unix_now()).map_err(|e| e.to_string())?;
        if node_key_of(&author) != Some(announcement.provider.record.node_key) {
            return Err("announcement signed by one peer names another as provider".into());
        }
        self.accepted_announcements += 1;
        self.record_cache
            .insert(author, announcement.provider.clone());
        self.remember_providers(announcement.hash, &[author]);
        Ok(())
    }

    /// A worker's advert: verified, signed by the peer that authored the message, and newer
    /// than the one kept (a replayed old advert cannot roll a worker's claims back).
    fn check_worker_advert(&mut self, message: &gossipsub::Message) -> Result<(), String> {
        let author = message.source.ok_or("worker advert has no author")?;
        let advert = SignedWorkerAdvert::decode_verified(&message.data, unix_now())
            .map_err(|e| e.to_string())?;
        if node_key_of(&author) != Some(advert.advert.node_key) {
            return Err("worker advert signed by one peer names another".into());
        }
        if let Some(kept) = self.workers.get(&author)
            && kept.advert.issued_at >= advert.advert.issued_at
        {
            return Err("worker advert is not newer than the one kept".into());
        }
        self.workers.insert(author, advert);
        Ok(())
    }

    /// Adverts still valid now, newest first; expired ones are dropped.
    fn live_workers(&mut self) -> Vec<SignedWorkerAdvert> {
        let now = unix_now();
        let expired: Vec<PeerId> = self
            .workers
            .iter()
            .filter(|(_, a)| a.advert.expires_at() < now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.workers.remove(&peer);
        }
        let mut live: Vec<SignedWorkerAdvert> = self.workers.values().cloned().collect();
        live.sort_by_key(|a| std::cmp::Reverse(a.advert.issued_at));
        live
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.on_inbound(request),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                match result {
                    QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })) => {
                        let me = *self.swarm.local_peer_id();
                        if let Some(query) = self.provider_queries.get_mut(&id) {
                            for peer in providers {
                                if peer != me && !query.found.contains(&peer) {
                                    query.found.push(peer);
                                }
                            }
                            // Answer with the first providers found rather than waiting for
                            // the whole walk: provider entries live on the same closest
                            // peers, so the first answer usually lists them all, and a walk
                            // that meets dead peers can take seconds to end.
                            if !query.found.is_empty() {
                                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                    q.finish();
                                }
                                self.answer_providers(id);
                            }
                        }
                    }
                    QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                        self.on_found_record(id, found.record);
                    }
                    QueryResult::Bootstrap(_) if step.last && !self.joined => {
                        self.joined = true;
                        tracing::info!(
                            peers = self.swarm.connected_peers().count(),
                            "joined the swarm; publishing node record and provider entries"
                        );
                        self.republish_all();
                    }
                    QueryResult::StartProviding(result) if step.last => {
                        self.provide_queries.remove(&id);
                        if let Err(e) = result {
                            tracing::debug!("provider entry not replicated: {e:?}");
                        }
                        self.pump_provides();
                    }
                    QueryResult::PutRecord(Err(e)) => {
                        tracing::debug!("node record not replicated: {e:?}")
                    }
                    _ => {}
                }
                if step.last {
                    self.answer_providers(id);
                    if let Some(query) = self.record_queries.remove(&id) {
                        for reply in query.replies {
                            let _ = reply.send(None);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_found_record(&mut self, id: QueryId, record: Record) {
        match records::validate_put(&record.key, &record.value, unix_now()) {
            Ok(signed) => {
                let Some(query) = self.record_queries.remove(&id) else {
                    return;
                };
                self.record_cache.insert(query.peer, signed.clone());
                for reply in query.replies {
                    let _ = reply.send(Some(signed.clone()));
                }
                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                    q.finish();
                }
            }
            Err(e) => {
                self.rejected += 1;
                tracing::debug!("ignoring invalid node record from the DHT: {e}");
            }
        }
    }

    fn on_inbound(&mut self, request: InboundRequest) {
        let now = unix_now();
        match request {
            InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                match records::validate_put(&record.key, &record.value, now) {
                    Ok(signed) => {
                        let store = self.swarm.behaviour_mut().kad.store_mut();
                        let newer_stored = store
                            .get(&record.key)
                            .and_then(|r| SignedNodeRecord::decode_verified(&r.value, now).ok())
                            .is_some_and(|stored| {
                                stored.record.issued_at > signed.record.issued_at
                            });
                        if !newer_stored && let Err(e) = store.put(record) {
                            tracing::debug!("record store full: {e}");
                        }
                        // Cache it when a peer stores its own record; records about
                        // others are cached when looked up.
                        if node_key_of(&source) == Some(signed.record.node_key) {
                            self.record_cache.insert(source, signed);
                        }
                    }
                    Err(e) => {
                        self.rejected += 1;
                        tracing::debug!(%source, "refused DHT record: {e}");
                    }
                }
            }
            InboundRequest::AddProvider {
                record: Some(record),
            } => {
                if records::hash_of_provider_key(&record.key).is_some() {
                    self.store_provider(record);
                } else {
                    self.rejected += 1;
                    tracing::debug!(provider = %record.provider, "refused provider entry outside /sg/blob/");
                }
            }
            _ => {}
        }
    }
}
