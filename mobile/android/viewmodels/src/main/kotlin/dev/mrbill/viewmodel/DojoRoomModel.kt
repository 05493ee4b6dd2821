package dev.mrbill.viewmodel

import dev.mrbill.core.DojoListener
import dev.mrbill.core.DojoSession
import dev.mrbill.core.LiveState
import dev.mrbill.core.RemoteCursor
import dev.mrbill.wire.ChatMessage
import dev.mrbill.wire.Dojo
import dev.mrbill.wire.Peer
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** The voice call in a room. */
sealed interface CallState {
    data object Idle : CallState

    /** [from] is calling: accept or decline. */
    data class Ringing(val from: ULong) : CallState

    data class InCall(val peers: Set<ULong>, val muted: Boolean = false) : CallState
}

data class DojoRoomState(
    val dojo: Dojo,
    /** The shared code as this device has it (the editor's text). */
    val code: String = "",
    val live: LiveState = LiveState.Connecting,
    /** Everyone else in the room. */
    val peers: List<Peer> = emptyList(),
    /** The others' cursors in [code] (UTF-16 indexes, as Kotlin counts). */
    val cursors: List<RemoteCursor> = emptyList(),
    val chat: List<ChatMessage> = emptyList(),
    val draft: String = "",
    val call: CallState = CallState.Idle,
    /** Why the room closed for good (removed, ended, full), for the screen to say. */
    val closedBecause: String? = null,
    val problem: Problem? = null,
)

/**
 * A dojo room: the code editor bound to the shared text (the editor reports the whole new text
 * and the selection; the model turns it into one insert/delete), the others' cursors,
 * participants, chat (history, then live), and the voice call's signalling for [call].
 */
class DojoRoomModel(app: AppModel, dojo: Dojo, private val call: CallEngine?) : ScreenModel(app), DojoListener {
    private val state_ = MutableStateFlow(DojoRoomState(dojo))
    val state: StateFlow<DojoRoomState> = state_.asStateFlow()

    @Volatile private var session: DojoSession? = null
    @Volatile private var pendingOffer: Pair<ULong, String>? = null

    init {
        act(::failed) {
            val history = withRetry { app.core.chatHistory(dojo.id) }
            state_.update { s -> s.copy(chat = merge(history.items, s.chat)) }
        }
        act(::failed) {
            val opened = app.core.openDojo(dojo.id, this)
            session = opened
            state_.update { it.copy(code = opened.code()) }
            (app.state.value as? AppState.SignedIn)?.user?.let { me ->
                opened.setUser(me.displayName.ifBlank { me.email }, colorOf(me.id))
            }
        }
    }

    /** The editor's new text and selection, after the user typed, pasted or deleted. */
    fun edit(text: String, selectionStart: Int, selectionEnd: Int) {
        val live = session ?: return
        val before = state_.value.code
        diff(before, text)?.let { change ->
            if (change.deleted > 0) live.delete(change.at.toUInt(), change.deleted.toUInt())
            if (change.inserted.isNotEmpty()) live.insert(change.at.toUInt(), change.inserted)
        }
        state_.update { it.copy(code = text) }
        live.setCursor(selectionStart.coerceAtLeast(0).toUInt(), selectionEnd.coerceAtLeast(0).toUInt())
    }

    /** The caret or selection moved without an edit. */
    fun select(start: Int, end: Int) = session?.setCursor(start.coerceAtLeast(0).toUInt(), end.coerceAtLeast(0).toUInt())

    /** The editor lost focus: the others stop seeing this cursor. */
    fun blur() = session?.clearCursor()

    fun setDraft(text: String) = state_.update { it.copy(draft = text) }

    fun sendChat() {
        val text = state_.value.draft.trim()
        if (text.isEmpty()) return
        session?.sendChat(text) ?: return
        state_.update { it.copy(draft = "") }
    }

    /** Calls everyone in the room. */
    fun startCall() {
        val engine = call ?: return
        val peers = state_.value.peers.map { it.peer }.toSet()
        if (peers.isEmpty() || state_.value.call is CallState.InCall) return
        state_.update { it.copy(call = CallState.InCall(peers)) }
        peers.forEach { peer -> engine.call(peer, sender(peer)) }
    }

    fun acceptCall() {
        val (from, offer) = pendingOffer ?: return
        pendingOffer = null
        state_.update { it.copy(call = CallState.InCall(setOf(from))) }
        call?.receive(from, offer, sender(from))
    }

    fun toggleMute() = state_.update { s ->
        val now = s.call as? CallState.InCall ?: return@update s
        call?.setMuted(!now.muted)
        s.copy(call = now.copy(muted = !now.muted))
    }

    /** Hangs up (or declines a ringing call). */
    fun hangUp() {
        val peers = when (val now = state_.value.call) {
            is CallState.InCall -> now.peers
            is CallState.Ringing -> setOf(now.from)
            CallState.Idle -> return
        }
        pendingOffer = null
        peers.forEach { peer ->
            runCatching { session?.sendSignal(peer, HANGUP) }
            call?.hangUp(peer)
        }
        state_.update { it.copy(call = CallState.Idle) }
    }

    /** Leaves the room (the screen goes). */
    override fun close() {
        if (state_.value.call != CallState.Idle) hangUp()
        session?.leave()
        super.close()
    }

    override fun onCode(code: String) = state_.update { it.copy(code = code) }

    override fun onChat(message: ChatMessage) = state_.update { it.copy(chat = merge(it.chat, listOf(message))) }

    override fun onPeers(peers: List<Peer>) = state_.update { s ->
        // Someone who left is no longer in the call.
        val here = peers.mapTo(HashSet()) { it.peer }
        val call = when (val c = s.call) {
            is CallState.InCall -> (c.peers intersect here).let { left -> if (left.isEmpty()) CallState.Idle else c.copy(peers = left) }
            is CallState.Ringing -> if (c.from in here) c else CallState.Idle
            CallState.Idle -> c
        }
        s.copy(peers = peers, call = call)
    }

    override fun onCursors(cursors: List<RemoteCursor>) = state_.update { it.copy(cursors = cursors) }

    override fun onSignal(from: ULong, signalJson: String) {
        val kind = Regex("\"kind\"\\s*:\\s*\"(\\w+)\"").find(signalJson)?.groupValues?.get(1)
        val now = state_.value.call
        when {
            kind == "hangup" -> {
                call?.hangUp(from)
                state_.update { s ->
                    val c = s.call
                    val next = if (c is CallState.InCall && c.peers.size > 1) c.copy(peers = c.peers - from) else CallState.Idle
                    s.copy(call = next)
                }
            }
            kind == "offer" && now == CallState.Idle -> {
                pendingOffer = from to signalJson
                state_.update { it.copy(call = CallState.Ringing(from)) }
            }
            else -> {
                if (kind == "offer" && now is CallState.InCall) state_.update { it.copy(call = now.copy(peers = now.peers + from)) }
                call?.receive(from, signalJson, sender(from))
            }
        }
    }

    override fun onState(state: LiveState) {
        val closed = state as? LiveState.Closed
        if (closed?.code?.toInt() == 4001) app.sessionEnded()
        state_.update { it.copy(live = state, closedBecause = closed?.let { c -> why(c.code.toInt()) }) }
    }

    private fun sender(peer: ULong): (String) -> Unit = { json -> runCatching { session?.sendSignal(peer, json) } }

    private fun failed(problem: Problem) = state_.update { it.copy(problem = problem) }

    /** One edit turning [before] into [after]: where, how much removed, what inserted. */
    data class Change(val at: Int, val deleted: Int, val inserted: String)

    companion object {
        private const val HANGUP = """{"kind": "hangup"}"""

        /** The single change between two texts (common prefix and suffix kept), never splitting
         * a surrogate pair; null when they are equal. */
        fun diff(before: String, after: String): Change? {
            if (before == after) return null
            var prefix = 0
            val shortest = minOf(before.length, after.length)
            while (prefix < shortest && before[prefix] == after[prefix]) prefix++
            if (prefix > 0 && before[prefix - 1].isHighSurrogate()) prefix--
            var suffix = 0
            while (suffix < shortest - prefix && before[before.length - 1 - suffix] == after[after.length - 1 - suffix]) suffix++
            if (suffix > 0 && before[before.length - suffix].isLowSurrogate()) suffix--
            return Change(prefix, before.length - prefix - suffix, after.substring(prefix, after.length - suffix))
        }

        /** Chat in order, each message once (history and live can overlap). */
        fun merge(a: List<ChatMessage>, b: List<ChatMessage>): List<ChatMessage> =
            (a + b).associateBy { it.seq }.values.sortedBy { it.seq }

        /** A stable colour per user for their cursor. */
        fun colorOf(id: String): String = PALETTE[Math.floorMod(id.hashCode(), PALETTE.size)]

        private val PALETTE = listOf("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab")

        fun why(code: Int): String? = when (code) {
            1000 -> null
            4001 -> "Your session ended. Sign in again."
            4003 -> "You were removed from this dojo."
            4004 -> "This dojo no longer exists."
            4005 -> "This dojo is full."
            4006 -> "This dojo has ended."
            else -> "The room closed ($code)."
        }
    }
}
