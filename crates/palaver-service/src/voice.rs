//! Public voice rooms: create, browse, join and leave, the roles inside a
//! room (host, speaker, listener), hands, mutes and removals, and the media
//! signaling with this node's SFU, which is the WebRTC peer of every
//! participant.
//!
//! Events go to the room's topic `voice:{id}` (participant_joined,
//! participant_left, role_changed, mute_changed, hand_raised, speaking,
//! room_closed); SFU signaling to the participant's `user:{id}` as `signal`
//! events `from: "sfu"`. The store holds who is in a room; the SFU only
//! carries media, and every role or mute change is pushed to it as the
//! participant's [`PeerPolicy`], so a listener or a muted speaker is never
//! forwarded whatever their client does.
//!
//! Many nodes: a room's media lives in one node's SFU, recorded as a lease
//! in [`MediaHosts`] (Redis across nodes) that the hosting node renews
//! while its SFU carries the room. Every media command (offer, answer, ICE
//! candidate, policy change, removal, closing) goes to that node: run here
//! when it is this one, else sent over the [`NodeLink`] to the host, which
//! runs it with [`VoiceService::run_media`] and sends the result back. So
//! signaling and events work from any node; a dead host's leases lapse and
//! the next join or signal re-hosts the room on a live node.
//!
//! Liveness: every participant has a heartbeat. Joining, the hub's pings
//! (`touch_user`), `POST .../heartbeat` and a live media connection refresh
//! it; the hub calls [`VoiceService::on_disconnect`] when a user's last
//! connection drops, and a sweeper removes participants whose heartbeat is
//! older than the timeout, so a vanished client leaves within seconds.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::TimeDelta;
use palaver_core::media::{AudioPolicy, MediaPolicy};
use palaver_core::time::now;
use palaver_core::user::{Level, Role};
use palaver_core::voice::{NewVoiceRoom, VoiceParticipant, VoiceRole, VoiceRoom};
use palaver_core::{Error, Id, Result, UserId};
use palaver_sfu::{PeerPolicy, Sfu, SfuError, SfuEvent};
use palaver_store::{PageRequest, RemovedParticipant, RoleChange, Store, VoiceFlag, VoiceJoin};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::media_hosts::{MediaHost, MediaHosts, MemoryMediaHosts};
use crate::nodes::{NodeLink, NodeService};
use crate::pagination::Page;
use crate::realtime::{Realtime, RealtimeHandle};

/// Settings of voice rooms.
#[derive(Debug, Clone)]
pub struct VoiceSettings {
    /// Largest `max_participants` a room may have.
    pub max_participants_ceiling: i64,
    /// An empty room closes after this long.
    pub idle_close: Duration,
    /// A participant without a heartbeat for this long is removed.
    pub heartbeat_timeout: Duration,
    /// How often the sweeper looks for stale participants and idle rooms.
    pub sweep_interval: Duration,
    /// This node's name (rooms record which node carries their media).
    pub node_id: String,
    /// ICE servers handed to clients with `join` (STUN/TURN); the SFU
    /// itself is ICE-lite on a reachable address and needs none.
    pub ice_servers: Vec<Value>,
    /// The audio policy (from configuration, shared with calls).
    pub media: MediaPolicy,
    /// A room's media host lease lives this long unless its node renews
    /// it (every third of it): a dead node's rooms are re-hosted after it.
    pub host_ttl: Duration,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        Self {
            max_participants_ceiling: 100,
            idle_close: Duration::from_secs(300),
            heartbeat_timeout: Duration::from_secs(8),
            sweep_interval: Duration::from_secs(1),
            node_id: "node".into(),
            ice_servers: Vec::new(),
            media: MediaPolicy::from(AudioPolicy::default()),
            host_ttl: Duration::from_secs(15),
        }
    }
}

/// The RFC 6464 client-to-mixer audio level header extension.
const AUDIO_LEVEL_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// What a client needs to connect its media.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomMedia {
    /// The node whose SFU carries the room's media.
    pub node: String,
    /// Its UDP address (`host:port`): the only ICE candidate, ICE-lite.
    pub udp: String,
    /// Always true: the SFU is ICE-lite, the client is the controlling agent.
    pub ice_lite: bool,
    /// STUN/TURN servers for the client's own candidates.
    #[schema(value_type = Vec<Object>)]
    pub ice_servers: Vec<Value>,
    /// What the caller may publish now (a speaker: audio; a teacher who
    /// speaks: a screen-share video track too).
    pub publish: PublishRights,
    /// The audio policy, the same as calls': `audio` (capture constraints
    /// for `getUserMedia`) and `opus` (the `a=fmtp` parameters).
    #[serde(flatten)]
    pub policy: MediaPolicy,
    /// The RTP header extension (RFC 6464) senders must add: it drives
    /// active-speaker detection.
    pub audio_level_extension: String,
    /// How to signal: the `signal` op with `room_id` over `/ws` (or
    /// `POST /voice-rooms/{id}/signal`).
    pub signaling: String,
}

/// What a participant may publish.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PublishRights {
    /// One Opus track.
    pub audio: bool,
    /// One screen-share video track.
    pub video: bool,
}

/// A new room, as asked for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// Up to 1000 characters.
    #[serde(default)]
    pub description: String,
    /// What the conversation is about, 1 to 60 characters (stored lowercased).
    pub topic: String,
    /// For learners of this level.
    pub difficulty_level: Level,
    /// 2 up to the server's ceiling (default 50, or the ceiling if lower).
    pub max_participants: Option<i64>,
    /// 1 to max_participants (default 10): speaker seats, the host's included.
    pub max_speakers: Option<i64>,
}

/// What joining returns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JoinedRoom {
    /// The room, counts including the caller.
    pub room: VoiceRoom,
    /// Everyone in it, the caller included.
    pub participants: Vec<VoiceParticipant>,
    /// The caller's own seat.
    pub me: VoiceParticipant,
    /// How to connect media.
    pub media: RoomMedia,
}

/// The kinds of media signal a participant sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// An SDP offer (first, renegotiation or ICE restart): `{type, sdp}`.
    Offer,
    /// An SDP answer to the SFU's offer: `{type, sdp}`.
    Answer,
    /// A trickled candidate: `{candidate}`.
    IceCandidate,
}

/// What the SFU says back to a signal, to deliver in this order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SignalReply {
    /// The SDP answer to an offer: `{type: "answer", sdp, tracks, refused}`.
    #[schema(value_type = Option<Object>)]
    pub answer: Option<Value>,
    /// The SFU's own offer that follows it (the other participants'
    /// tracks): `{type: "offer", sdp, tracks}`; answer it with `answer`.
    #[schema(value_type = Option<Object>)]
    pub offer: Option<Value>,
}

/// A command for the SFU that hosts a room's media, wherever it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MediaCommand {
    /// A participant's offer, with what they may publish.
    Offer {
        /// The room.
        room: Id,
        /// The participant.
        user: UserId,
        /// The SDP offer.
        sdp: String,
        /// What they may publish.
        policy: PeerPolicy,
    },
    /// A participant's answer to the SFU's offer.
    Answer {
        /// The room.
        room: Id,
        /// The participant.
        user: UserId,
        /// The SDP answer.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The room.
        room: Id,
        /// The participant.
        user: UserId,
        /// The `candidate:` line.
        candidate: String,
    },
    /// What a participant may publish changed (role, mute).
    Policy {
        /// The room.
        room: Id,
        /// The participant.
        user: UserId,
        /// The new policy.
        policy: PeerPolicy,
    },
    /// A participant left.
    Remove {
        /// The room.
        room: Id,
        /// The participant.
        user: UserId,
    },
    /// The room closed.
    CloseRoom {
        /// The room.
        room: Id,
    },
}

/// The node service that runs media commands for rooms this node hosts.
pub const MEDIA_SERVICE: &str = "voice.media";

/// Answers other nodes' [`MediaCommand`]s with this node's SFU.
pub struct MediaNode(pub Arc<VoiceService>);

#[async_trait::async_trait]
impl NodeService for MediaNode {
    async fn handle(&self, body: Value) -> Result<Value> {
        let command: MediaCommand =
            serde_json::from_value(body).map_err(|e| Error::BadRequest(format!("bad media command: {e}")))?;
        let reply = self.0.run_media(command).await?;
        serde_json::to_value(reply).map_err(Error::internal)
    }
}

fn room_topic(id: Id) -> String {
    format!("voice:{id}")
}

fn user_topic(id: UserId) -> String {
    format!("user:{id}")
}

fn sfu_error(err: SfuError) -> Error {
    match err {
        SfuError::BadSignal(m) => Error::invalid("payload", m),
        SfuError::NoPeer => Error::Unprocessable("no media session yet: send an offer first".into()),
        SfuError::NoPendingOffer => Error::Conflict("the SFU has no offer waiting for an answer".into()),
        SfuError::Full => Error::Unavailable("this media node is full".into()),
        SfuError::Stopped => Error::Unavailable("the media server is not running".into()),
    }
}

/// The voice-room use cases.
pub struct VoiceService {
    store: Arc<dyn Store>,
    realtime: RealtimeHandle,
    sfu: OnceLock<Sfu>,
    settings: VoiceSettings,
    /// Where rooms' media lives: shared by the cluster once installed,
    /// else `local_hosts` (this node hosts everything).
    hosts: OnceLock<Arc<dyn MediaHosts>>,
    local_hosts: MemoryMediaHosts,
    link: OnceLock<Arc<dyn NodeLink>>,
}

impl std::fmt::Debug for VoiceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl VoiceService {
    /// Builds the service; the SFU is installed with [`Self::set_sfu`].
    pub fn new(store: Arc<dyn Store>, realtime: RealtimeHandle, settings: VoiceSettings) -> Self {
        let local_hosts = MemoryMediaHosts::new(settings.host_ttl);
        Self {
            store,
            realtime,
            sfu: OnceLock::new(),
            settings,
            hosts: OnceLock::new(),
            local_hosts,
            link: OnceLock::new(),
        }
    }

    /// Joins the cluster (once): the room hosts every node shares, and the
    /// link that carries media commands to the node hosting a room.
    pub fn set_cluster(&self, hosts: Arc<dyn MediaHosts>, link: Arc<dyn NodeLink>) -> bool {
        self.hosts.set(hosts).is_ok() & self.link.set(link).is_ok()
    }

    fn hosts(&self) -> &dyn MediaHosts {
        match self.hosts.get() {
            Some(hosts) => hosts.as_ref(),
            None => &self.local_hosts,
        }
    }

    /// This node as a media host.
    fn me(&self) -> MediaHost {
        MediaHost { node: self.settings.node_id.clone(), udp: self.media_addr() }
    }

    /// The node hosting the room's media; this one when none does.
    async fn host(&self, room: Id) -> Result<MediaHost> {
        self.hosts().claim(room, &self.me()).await
    }

    /// Runs a media command on `host`'s SFU: here, or over the link.
    async fn media(&self, host: &MediaHost, command: MediaCommand) -> Result<SignalReply> {
        if host.node == self.settings.node_id {
            return self.run_media(command).await;
        }
        let Some(link) = self.link.get() else {
            return Err(Error::Unavailable(format!(
                "this room's media is on node {}, which this node cannot reach",
                host.node
            )));
        };
        let body = serde_json::to_value(&command).map_err(Error::internal)?;
        let answer = link.request(&host.node, MEDIA_SERVICE, body).await?;
        serde_json::from_value(answer).map_err(|e| Error::internal(format!("bad answer from node {}: {e}", host.node)))
    }

    /// A command for existing media sessions (a policy, a removal, a
    /// closing): sent to the room's host if it has one, else run here
    /// (where it finds nothing, or a stale session to end). Best effort.
    async fn media_existing(&self, room: Id, command: MediaCommand) {
        let host = match self.hosts().get(room).await {
            Ok(Some(host)) => host,
            Ok(None) => self.me(),
            Err(e) => {
                tracing::warn!(error = %e, room, "cannot look up the room's media host");
                self.me()
            }
        };
        if let Err(e) = self.media(&host, command).await {
            tracing::warn!(error = %e, room, node = %host.node, "media command failed");
        }
    }

    /// Runs a media command on this node's SFU (for a participant here, or
    /// for another node).
    pub async fn run_media(&self, command: MediaCommand) -> Result<SignalReply> {
        let sfu = self.media_sfu()?;
        match command {
            MediaCommand::Offer { room, user, sdp, policy } => {
                let outcome = sfu.offer(room, user, sdp, policy).await.map_err(sfu_error)?;
                let answer = json!({"type": "answer", "sdp": outcome.answer, "tracks": outcome.tracks,
                                    "refused": outcome.refused});
                let offer = match outcome.followup {
                    Some(SfuEvent::Offer { sdp, tracks, .. }) => {
                        Some(json!({"type": "offer", "sdp": sdp, "tracks": tracks}))
                    }
                    _ => None,
                };
                Ok(SignalReply { answer: Some(answer), offer })
            }
            MediaCommand::Answer { room, user, sdp } => {
                sfu.answer(room, user, sdp).await.map_err(sfu_error)?;
                Ok(SignalReply::default())
            }
            MediaCommand::Candidate { room, user, candidate } => {
                sfu.ice_candidate(room, user, candidate).await.map_err(sfu_error)?;
                Ok(SignalReply::default())
            }
            MediaCommand::Policy { room, user, policy } => {
                sfu.set_policy(room, user, policy).await.map_err(sfu_error)?;
                Ok(SignalReply::default())
            }
            MediaCommand::Remove { room, user } => {
                sfu.remove_peer(room, user).await.map_err(sfu_error)?;
                Ok(SignalReply::default())
            }
            MediaCommand::CloseRoom { room } => {
                sfu.close_room(room).await.map_err(sfu_error)?;
                Ok(SignalReply::default())
            }
        }
    }

    /// Renews the leases of the rooms this node's SFU carries, and ends
    /// the media of any another node took over meanwhile.
    async fn renew_hosts(&self) {
        let Some(sfu) = self.sfu.get() else { return };
        let Ok(rooms) = sfu.rooms().await else { return };
        match self.hosts().renew(&self.me(), &rooms).await {
            Ok(lost) => {
                for room in lost {
                    tracing::warn!(room, "another node hosts this room's media now; ending it here");
                    let _ = sfu.close_room(room).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew media host leases"),
        }
    }

    /// Installs this node's SFU (once).
    pub fn set_sfu(&self, sfu: Sfu) -> bool {
        self.sfu.set(sfu).is_ok()
    }

    /// This node's SFU, if it runs one.
    pub fn sfu(&self) -> Option<&Sfu> {
        self.sfu.get()
    }

    fn media_sfu(&self) -> Result<&Sfu> {
        self.sfu.get().ok_or_else(|| Error::Unavailable("this node runs no media server".into()))
    }

    fn media_addr(&self) -> String {
        self.sfu.get().map(|s| s.advertised_addr().to_string()).unwrap_or_default()
    }

    /// Opens a room; the caller is its host once they join.
    pub async fn create(&self, who: &Principal, request: &RoomRequest) -> Result<VoiceRoom> {
        let new = NewVoiceRoom::validate(
            &request.name,
            &request.description,
            &request.topic,
            request.difficulty_level,
            request.max_participants,
            request.max_speakers,
            self.settings.max_participants_ceiling,
        )?;
        Ok(self.store.create_voice_room(who.id(), &new, now()).await?)
    }

    /// Open rooms, newest first, filtered by topic (case-insensitive) and level.
    pub async fn list(&self, topic: Option<&str>, level: Option<Level>, page: PageRequest) -> Result<Page<VoiceRoom>> {
        let topic = topic.map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty());
        let items = self.store.list_voice_rooms(topic.as_deref(), level, page).await?;
        Ok(Page::new(items, page, |r| r.id))
    }

    /// A room, open or closed.
    pub async fn room(&self, id: Id) -> Result<VoiceRoom> {
        self.store.voice_room(id).await?.ok_or_else(|| Error::not_found("voice room", id))
    }

    /// Everyone in a room.
    pub async fn participants(&self, id: Id) -> Result<Vec<VoiceParticipant>> {
        self.room(id).await?;
        Ok(self.store.voice_participants(id).await?)
    }

    /// Closes a room: its creator or a moderator. Everyone is removed and
    /// their media ends.
    pub async fn close(&self, who: &Principal, id: Id) -> Result<()> {
        let room = self.room(id).await?;
        if room.created_by != who.id() && !who.user.role.is_moderator() {
            return Err(Error::Forbidden("only the room's creator or a moderator can close it".into()));
        }
        let Some(users) = self.store.close_voice_room(id, now()).await? else {
            return Err(Error::not_found("voice room", id));
        };
        if room.created_by != who.id() {
            self.store.log_moderation(who.id(), "close_voice_room", "voice_room", id, "", now()).await?;
        }
        self.closed(id, &users).await;
        Ok(())
    }

    async fn closed(&self, id: Id, users: &[UserId]) {
        self.media_existing(id, MediaCommand::CloseRoom { room: id }).await;
        if let Err(e) = self.hosts().release(id).await {
            tracing::warn!(error = %e, room = id, "cannot release the room's media host");
        }
        self.realtime.publish(&room_topic(id), "room_closed", None, json!({"room_id": id}));
        for user in users {
            self.realtime.revoke(&room_topic(id), *user);
        }
    }

    /// Takes a seat (speaker while seats are free, else listener; the
    /// creator is the host) and returns what the client needs for media.
    pub async fn join(&self, who: &Principal, id: Id) -> Result<JoinedRoom> {
        let room = self.room(id).await?;
        if !room.is_active {
            return Err(Error::not_found("voice room", id));
        }
        if room.created_by != who.id() && self.store.blocked_either(room.created_by, who.id()).await? {
            return Err(Error::Forbidden("you cannot join this room".into()));
        }
        let host = self.host(id).await?;
        let outcome = self.store.join_voice_room(id, who.id(), &host.node, &host.udp, now()).await?;
        let joined = match outcome {
            VoiceJoin::Joined(_) => true,
            VoiceJoin::Already(_) => false,
            VoiceJoin::Full => return Err(Error::Conflict(format!("voice room {id} is full"))),
            VoiceJoin::Closed => return Err(Error::not_found("voice room", id)),
        };
        let mut room = self.room(id).await?;
        if room.media_node.as_deref() != Some(host.node.as_str())
            || room.media_addr.as_deref() != Some(host.udp.as_str())
        {
            // Re-hosted (its old node died): the record follows the lease.
            self.store.set_voice_media(id, &host.node, &host.udp, now()).await?;
            room.media_node = Some(host.node.clone());
            room.media_addr = Some(host.udp.clone());
        }
        let participants = self.store.voice_participants(id).await?;
        let me = participants
            .iter()
            .find(|p| p.user_id == who.id())
            .cloned()
            .ok_or_else(|| Error::Conflict("you left the room while joining".into()))?;
        if joined {
            self.realtime.publish(
                &room_topic(id),
                "participant_joined",
                None,
                // `display_name` and `participant_count` serve the original
                // design's socket. Never an email: other participants see
                // each other by name and id only.
                json!({"room_id": id, "participant": me, "user_id": who.id(),
                       "display_name": who.user.display_name, "participant_count": room.current_participants}),
            );
        }
        let policy = policy(&me, who.user.role);
        let media = RoomMedia {
            node: host.node,
            udp: host.udp,
            ice_lite: true,
            ice_servers: self.settings.ice_servers.clone(),
            publish: PublishRights { audio: policy.audio, video: policy.video },
            policy: self.settings.media.clone(),
            audio_level_extension: AUDIO_LEVEL_EXTENSION.into(),
            signaling: format!(
                "send {{\"op\":\"signal\",\"room_id\":{id},\"kind\":\"offer\",\"payload\":{{\"type\":\"offer\",\"sdp\":\"...\"}}}} on /ws"
            ),
        };
        Ok(JoinedRoom { room, participants, me, media })
    }

    /// Leaves a room (not being in it is fine).
    pub async fn leave(&self, who: &Principal, id: Id) -> Result<()> {
        self.room(id).await?;
        if let Some(role) = self.store.leave_voice_room(id, who.id(), now()).await? {
            self.left(id, who.id(), role, "left").await;
        }
        Ok(())
    }

    async fn left(&self, room: Id, user: UserId, role: VoiceRole, reason: &str) {
        self.media_existing(room, MediaCommand::Remove { room, user }).await;
        let name = self.store.user_by_id(user).await.ok().flatten().map(|u| u.display_name);
        let count = self.store.voice_room(room).await.ok().flatten().map(|r| r.current_participants);
        if count == Some(0) {
            // Empty: the next participant's node hosts it, as the store's
            // record moves with the first join of an empty room.
            if let Err(e) = self.hosts().release(room).await {
                tracing::warn!(error = %e, room, "cannot release the room's media host");
            }
        }
        self.realtime.publish(
            &room_topic(room),
            "participant_left",
            None,
            json!({"room_id": room, "user_id": user, "role": role, "reason": reason, "display_name": name,
                   "participant_count": count}),
        );
        self.realtime.revoke(&room_topic(room), user);
    }

    /// Refreshes the caller's heartbeat in a room.
    pub async fn heartbeat(&self, who: &Principal, id: Id) -> Result<()> {
        let touched = self.store.touch_voice_participants(&[(id, who.id())], None, now()).await?;
        if touched == 0 {
            return Err(Error::not_found("voice room participation", id));
        }
        Ok(())
    }

    /// Hook for the hub: a user's connection shows life (a ping), so every
    /// seat they hold stays.
    pub async fn touch_user(&self, user: UserId) -> Result<()> {
        self.store.touch_voice_participants(&[], Some(user), now()).await?;
        Ok(())
    }

    /// Hook for the hub: the user's last connection dropped; they leave
    /// every voice room at once.
    pub async fn on_disconnect(&self, user: UserId) -> Result<()> {
        let removed = self.store.remove_voice_user(user, now()).await?;
        for r in removed {
            self.left(r.room_id, r.user_id, r.role, "disconnected").await;
        }
        Ok(())
    }

    async fn seat(&self, room: Id, user: UserId) -> Result<VoiceParticipant> {
        self.store.voice_participant(room, user).await?.ok_or_else(|| Error::not_found("participant", user))
    }

    /// Whether `who` runs this room: its host, or a site moderator.
    async fn require_host(&self, who: &Principal, room: Id) -> Result<()> {
        if who.user.role.is_moderator() {
            self.room(room).await?;
            return Ok(());
        }
        match self.store.voice_participant(room, who.id()).await? {
            Some(p) if p.role == VoiceRole::Host => Ok(()),
            _ => Err(Error::Forbidden("only the room's host can do this".into())),
        }
    }

    /// Raises or lowers the caller's hand (listeners ask to speak).
    pub async fn raise_hand(&self, who: &Principal, id: Id, raised: bool) -> Result<VoiceParticipant> {
        let me = self.seat(id, who.id()).await?;
        if raised && me.role != VoiceRole::Listener {
            return Err(Error::Unprocessable("only listeners raise a hand; you can already speak".into()));
        }
        self.store.set_voice_flag(id, who.id(), VoiceFlag::HandRaised, raised).await?;
        self.realtime.publish(
            &room_topic(id),
            "hand_raised",
            None,
            json!({"room_id": id, "user_id": who.id(), "hand_raised": raised}),
        );
        self.seat(id, who.id()).await
    }

    /// Moves a participant between listener and speaker. Hosts (and
    /// moderators) invite listeners to speak and demote speakers; anyone
    /// may step down to listener.
    pub async fn set_role(&self, who: &Principal, id: Id, target: UserId, role: VoiceRole) -> Result<VoiceParticipant> {
        if role == VoiceRole::Host {
            return Err(Error::invalid("role", "must be speaker or listener"));
        }
        let self_demotion = target == who.id() && role == VoiceRole::Listener;
        if !self_demotion {
            self.require_host(who, id).await?;
        }
        match self.store.set_voice_role(id, target, role, now()).await? {
            RoleChange::Changed => {}
            RoleChange::Unchanged => return self.seat(id, target).await,
            RoleChange::NoSeat => return Err(Error::Conflict("every speaker seat is taken".into())),
            RoleChange::NotParticipant => return Err(Error::not_found("participant", target)),
            RoleChange::NotAllowed => return Err(Error::Unprocessable("the host's role cannot change".into())),
        }
        let seat = self.seat(id, target).await?;
        self.push_policy(&seat).await;
        self.realtime.publish(
            &room_topic(id),
            "role_changed",
            None,
            json!({"room_id": id, "user_id": target, "role": role, "by": who.id()}),
        );
        Ok(seat)
    }

    /// Mutes or unmutes. Anyone may mute or unmute themselves; a host (or
    /// moderator) may mute others, never unmute them.
    pub async fn set_muted(&self, who: &Principal, id: Id, target: UserId, muted: bool) -> Result<VoiceParticipant> {
        if target != who.id() {
            if !muted {
                return Err(Error::Forbidden("only the participant can unmute themselves".into()));
            }
            self.require_host(who, id).await?;
        }
        if !self.store.set_voice_flag(id, target, VoiceFlag::Muted, muted).await? {
            return Err(Error::not_found("participant", target));
        }
        let seat = self.seat(id, target).await?;
        self.push_policy(&seat).await;
        self.realtime.publish(
            &room_topic(id),
            "mute_changed",
            None,
            json!({"room_id": id, "user_id": target, "is_muted": muted, "by": who.id(),
                   "display_name": seat.display_name}),
        );
        Ok(seat)
    }

    /// Removes a participant (a host or moderator; never the host).
    pub async fn remove(&self, who: &Principal, id: Id, target: UserId) -> Result<()> {
        self.require_host(who, id).await?;
        let seat = self.seat(id, target).await?;
        if seat.role == VoiceRole::Host {
            return Err(Error::Unprocessable("the host cannot be removed; close the room instead".into()));
        }
        if let Some(role) = self.store.leave_voice_room(id, target, now()).await? {
            self.left(id, target, role, "removed").await;
        }
        Ok(())
    }

    async fn push_policy(&self, seat: &VoiceParticipant) {
        let user_role = match self.store.user_by_id(seat.user_id).await {
            Ok(Some(user)) => user.role,
            _ => Role::User,
        };
        let command = MediaCommand::Policy { room: seat.room_id, user: seat.user_id, policy: policy(seat, user_role) };
        self.media_existing(seat.room_id, command).await;
    }

    /// Media signaling with the SFU hosting the room, on this node or
    /// another. Only participants signal; what they may publish follows
    /// their seat.
    pub async fn signal(&self, who: &Principal, id: Id, kind: SignalKind, payload: &Value) -> Result<SignalReply> {
        self.room(id).await?;
        let seat = self
            .store
            .voice_participant(id, who.id())
            .await?
            .ok_or_else(|| Error::Forbidden("join the room before signaling its media".into()))?;
        let user = who.id();
        let command = match kind {
            SignalKind::Offer => {
                MediaCommand::Offer { room: id, user, sdp: sdp_of(payload)?, policy: policy(&seat, who.user.role) }
            }
            SignalKind::Answer => MediaCommand::Answer { room: id, user, sdp: sdp_of(payload)? },
            SignalKind::IceCandidate => {
                let candidate = payload
                    .get("candidate")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::invalid("payload.candidate", "is required"))?;
                if candidate.is_empty() {
                    // End of candidates: nothing to do for an ICE-lite peer.
                    return Ok(SignalReply::default());
                }
                if candidate.len() > 1024 {
                    return Err(Error::invalid("payload.candidate", "is too large"));
                }
                MediaCommand::Candidate { room: id, user, candidate: candidate.to_owned() }
            }
        };
        let host = self.host(id).await?;
        self.media(&host, command).await
    }

    /// Publishes what a signal reply holds to the caller's `user:{id}`
    /// topic, answer first (for WebSocket clients).
    pub fn publish_reply(&self, room: Id, user: UserId, reply: &SignalReply) {
        for (kind, payload) in [("answer", &reply.answer), ("offer", &reply.offer)] {
            if let Some(payload) = payload {
                self.realtime.publish(
                    &user_topic(user),
                    "signal",
                    None,
                    json!({"room_id": room, "from": "sfu", "kind": kind, "payload": payload}),
                );
            }
        }
    }

    /// Removes stale participants and closes idle rooms, once.
    pub async fn sweep(&self) -> Result<(Vec<RemovedParticipant>, Vec<Id>)> {
        let at = now();
        let timeout = TimeDelta::from_std(self.settings.heartbeat_timeout).unwrap_or(TimeDelta::seconds(8));
        let idle = TimeDelta::from_std(self.settings.idle_close).unwrap_or(TimeDelta::seconds(300));
        let cutoff = at - timeout;
        let stale = self.store.stale_voice_participants(cutoff, 500).await?;
        // Still subscribed to the room on a live WebSocket: alive.
        let mut by_room: std::collections::BTreeMap<Id, Vec<UserId>> = std::collections::BTreeMap::new();
        for (room, user) in stale {
            by_room.entry(room).or_default().push(user);
        }
        let mut alive = Vec::new();
        let mut gone = Vec::new();
        for (room, users) in by_room {
            let viewing = self.realtime.viewers(&room_topic(room), &users).await;
            for user in users {
                if viewing.contains(&user) { alive.push((room, user)) } else { gone.push((room, user)) }
            }
        }
        if !alive.is_empty() {
            self.store.touch_voice_participants(&alive, None, at).await?;
        }
        let removed = self.store.remove_voice_participants(&gone, Some(cutoff), at).await?;
        for r in &removed {
            self.left(r.room_id, r.user_id, r.role, "timeout").await;
        }
        let closed = self.store.close_idle_voice_rooms(at - idle, at).await?;
        for id in &closed {
            self.closed(*id, &[]).await;
        }
        Ok((removed, closed))
    }

    /// Runs the sweeper, the heartbeat of live media connections, and the
    /// relay of the SFU's events, until shutdown.
    pub fn spawn_workers(
        self: &Arc<Self>,
        events: Option<tokio::sync::mpsc::Receiver<SfuEvent>>,
        shutdown: CancellationToken,
    ) {
        let this = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.settings.sweep_interval);
            let mut media_tick = tokio::time::interval(this.settings.heartbeat_timeout / 3);
            let mut host_tick = tokio::time::interval((this.settings.host_ttl / 3).max(Duration::from_millis(100)));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = this.sweep().await {
                            tracing::warn!(error = %e, "voice sweep failed");
                        }
                    }
                    _ = media_tick.tick() => this.touch_media().await,
                    _ = host_tick.tick() => this.renew_hosts().await,
                }
            }
        });
        if let Some(mut events) = events {
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        event = events.recv() => match event {
                            Some(event) => this.relay(event).await,
                            None => break,
                        },
                    }
                }
            });
        }
    }

    /// Participants whose media connection is up are alive.
    async fn touch_media(&self) {
        let Some(sfu) = self.sfu.get() else { return };
        if let Ok(pairs) = sfu.connected_peers().await
            && !pairs.is_empty()
            && let Err(e) = self.store.touch_voice_participants(&pairs, None, now()).await
        {
            tracing::warn!(error = %e, "cannot record media heartbeats");
        }
    }

    /// Delivers one SFU event: renegotiation offers to the participant,
    /// speaking changes to the room.
    pub async fn relay(&self, event: SfuEvent) {
        match event {
            SfuEvent::Offer { room, user, sdp, tracks } => {
                self.realtime.publish(
                    &user_topic(user),
                    "signal",
                    None,
                    json!({"room_id": room, "from": "sfu", "kind": "offer",
                           "payload": {"type": "offer", "sdp": sdp, "tracks": tracks}}),
                );
            }
            SfuEvent::Speaking { room, user, speaking, level } => {
                if let Err(e) = self.store.set_voice_flag(room, user, VoiceFlag::Speaking, speaking).await {
                    tracing::debug!(error = %e, "cannot record speaking");
                }
                self.realtime.publish(
                    &room_topic(room),
                    "speaking",
                    None,
                    json!({"room_id": room, "user_id": user, "speaking": speaking, "level": level}),
                );
            }
            SfuEvent::Connected { room, user }
            | SfuEvent::Disconnected { room, user }
            | SfuEvent::Closed { room, user } => {
                let state = match event {
                    SfuEvent::Connected { .. } => "connected",
                    SfuEvent::Disconnected { .. } => "disconnected",
                    _ => "closed",
                };
                self.realtime.publish(&user_topic(user), "media_state", None, json!({"room_id": room, "state": state}));
            }
        }
    }
}

/// What a seat may publish: hosts and speakers audio; teachers among them
/// a screen share too.
pub fn policy(seat: &VoiceParticipant, user_role: Role) -> PeerPolicy {
    let speaks = seat.role.speaks();
    PeerPolicy { audio: speaks, video: speaks && user_role.can_share_screen(), muted: seat.is_muted }
}

fn sdp_of(payload: &Value) -> Result<String> {
    let sdp = payload.get("sdp").and_then(Value::as_str).ok_or_else(|| Error::invalid("payload.sdp", "is required"))?;
    if sdp.len() > 64 * 1024 {
        return Err(Error::invalid("payload.sdp", "is too large"));
    }
    Ok(sdp.to_owned())
}
