package dev.mrbill.android.ui

import android.Manifest
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.text.BasicTextField
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.AssistChip
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.draw.drawWithContent
import androidx.compose.ui.focus.onFocusChanged
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.text.TextLayoutResult
import androidx.compose.ui.text.TextRange
import androidx.compose.ui.text.TextStyle
import androidx.compose.ui.text.font.FontFamily
import androidx.compose.ui.text.input.TextFieldValue
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.core.LiveState
import dev.mrbill.core.RemoteCursor
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.CallEngine
import dev.mrbill.viewmodel.CallState
import dev.mrbill.wire.Dojo

/** A dojo room: the shared code with the others' cursors, who is here, chat, the voice call. */
@Composable
fun DojoRoomScreen(app: AppModel, dojo: Dojo, calls: () -> CallEngine, leave: () -> Unit) {
    val model = screenModel(key = "room-${dojo.id}") { app.dojoRoom(dojo, calls()) }
    val s by model.state.collectAsStateWithLifecycle()
    val microphone = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) model.startCall()
    }
    Column(Modifier.fillMaxSize().padding(12.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Text(dojo.name, style = MaterialTheme.typography.titleLarge, modifier = Modifier.weight(1f))
            Text(
                when (val live = s.live) {
                    LiveState.Connecting -> "connecting…"
                    LiveState.Live -> "live"
                    is LiveState.Reconnecting -> "reconnecting (${live.attempt})…"
                    is LiveState.Closed -> "closed"
                },
                style = MaterialTheme.typography.labelMedium,
            )
        }
        s.closedBecause?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        Row(horizontalArrangement = Arrangement.spacedBy(6.dp)) {
            s.cursors.forEach { c -> AssistChip(onClick = {}, label = { Text(c.name, color = color(c.color)) }) }
            if (s.peers.size > s.cursors.size) Text("+${s.peers.size - s.cursors.size} here", style = MaterialTheme.typography.labelMedium)
        }
        Editor(s.code, s.cursors, model::edit, model::select, model::blur, Modifier.weight(1f))
        Call(s.call, start = { microphone.launch(Manifest.permission.RECORD_AUDIO) }, mute = model::toggleMute, hangUp = model::hangUp)
        LazyColumn(Modifier.height(140.dp)) {
            items(s.chat, key = { it.seq }) { m -> Text(m.text, style = MaterialTheme.typography.bodyMedium) }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedTextField(s.draft, model::setDraft, placeholder = { Text("Message") }, modifier = Modifier.weight(1f), singleLine = true)
            Button(onClick = model::sendChat) { Text("Send") }
        }
        TextButton(onClick = leave) { Text("Leave") }
    }
    (s.call as? CallState.Ringing)?.let {
        AlertDialog(
            onDismissRequest = model::hangUp,
            title = { Text("Incoming call") },
            text = { Text("Someone in ${dojo.name} is calling.") },
            confirmButton = { TextButton(onClick = model::acceptCall) { Text("Answer") } },
            dismissButton = { TextButton(onClick = model::hangUp) { Text("Decline") } },
        )
    }
}

/** The code, editable; every change and caret move goes to the model; the others' carets are
 * drawn where the text layout puts their index. */
@Composable
private fun Editor(
    code: String,
    cursors: List<RemoteCursor>,
    edit: (String, Int, Int) -> Unit,
    select: (Int, Int) -> Unit,
    blur: () -> Unit,
    modifier: Modifier,
) {
    var value by remember { mutableStateOf(TextFieldValue(code)) }
    if (value.text != code) {
        // A remote change: keep the caret where it was, within the new text.
        value = value.copy(text = code, selection = TextRange(value.selection.start.coerceAtMost(code.length), value.selection.end.coerceAtMost(code.length)))
    }
    var layout by remember { mutableStateOf<TextLayoutResult?>(null) }
    BasicTextField(
        value = value,
        onValueChange = { next ->
            val changed = next.text != value.text
            val moved = next.selection != value.selection
            value = next
            if (changed) edit(next.text, next.selection.start, next.selection.end) else if (moved) select(next.selection.start, next.selection.end)
        },
        textStyle = TextStyle(fontFamily = FontFamily.Monospace, color = MaterialTheme.colorScheme.onSurface),
        onTextLayout = { layout = it },
        modifier = modifier.fillMaxWidth()
            .onFocusChanged { if (!it.isFocused) blur() }
            .drawWithContent {
                drawContent()
                val text = layout ?: return@drawWithContent
                cursors.forEach { c ->
                    val at = c.head.toInt().coerceIn(0, text.layoutInput.text.length)
                    val rect = text.getCursorRect(at)
                    drawLine(color(c.color), Offset(rect.left, rect.top), Offset(rect.left, rect.bottom), strokeWidth = 2.dp.toPx())
                }
            },
    )
}

@Composable
private fun Call(call: CallState, start: () -> Unit, mute: () -> Unit, hangUp: () -> Unit) {
    Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        when (call) {
            CallState.Idle -> OutlinedButton(onClick = start) { Text("Call") }
            is CallState.Ringing -> Text("Ringing…")
            is CallState.InCall -> {
                Text("In a call with ${call.peers.size}")
                OutlinedButton(onClick = mute) { Text(if (call.muted) "Unmute" else "Mute") }
                Button(onClick = hangUp) { Text("Hang up") }
            }
        }
    }
}

private fun color(css: String): Color =
    runCatching { Color(android.graphics.Color.parseColor(css)) }.getOrDefault(Color.Gray)
