package dev.mrbill.android.ui

import android.content.Intent
import android.net.Uri
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.remember
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import androidx.media3.common.MediaItem
import androidx.media3.exoplayer.ExoPlayer
import androidx.media3.ui.PlayerView
import coil.compose.AsyncImage
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.JobView
import dev.mrbill.wire.GroupBy
import dev.mrbill.wire.JobState
import dev.mrbill.wire.ReportFormat

/** Reports (PDF/CSV/JSON: start, progress, open) and the yearly video (start, progress, play, share). */
@Composable
fun MediaScreen(app: AppModel) {
    val reports = screenModel { app.reports() }
    val video = screenModel { app.video() }
    val r by reports.state.collectAsStateWithLifecycle()
    val v by video.state.collectAsStateWithLifecycle()
    val context = LocalContext.current
    Form {
        Text("Report", style = MaterialTheme.typography.titleLarge)
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            ReportFormat.entries.forEach { f -> FilterChip(r.format == f, { reports.setFormat(f) }, label = { Text(f.name) }) }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            GroupBy.entries.forEach { g -> FilterChip(r.groupBy == g, { reports.setGroupBy(g) }, label = { Text(g.name.lowercase()) }) }
        }
        Field("Only tags (comma-separated)", r.tags, reports::setTags, r.fieldErrors["tags"])
        Job(r.job, start = reports::start, cancel = reports::cancel)
        ProblemLine(r.problem)
        r.downloadUrl?.let { url ->
            Button(onClick = { context.startActivity(Intent(Intent.ACTION_VIEW).setDataAndType(Uri.parse(url), r.contentType)) }) { Text("Open") }
        }

        HorizontalDivider()
        Text("Our year in PoCs", style = MaterialTheme.typography.titleLarge)
        Field("Year", v.year.toString(), { t -> t.toIntOrNull()?.let(video::setYear) }, v.fieldErrors["year"])
        Field("Title", v.title, video::setTitle, v.fieldErrors["title"])
        Job(v.job, start = video::start, cancel = video::cancel)
        ProblemLine(v.problem)
        v.playUrl?.let { url ->
            v.thumbnailUrl?.let { AsyncImage(model = it, contentDescription = "Thumbnail", modifier = Modifier.fillMaxWidth()) }
            Player(url)
            OutlinedButton(onClick = {
                val share = Intent(Intent.ACTION_SEND).setType("text/plain").putExtra(Intent.EXTRA_TEXT, v.shareText)
                context.startActivity(Intent.createChooser(share, "Share the video"))
            }) { Text("Share") }
        }
    }
}

@Composable
private fun Job(job: JobView?, start: () -> Unit, cancel: () -> Unit) {
    if (job?.running == true) {
        LinearProgressIndicator(progress = { job.progress / 100f }, modifier = Modifier.fillMaxWidth())
        Text("${job.state.name.lowercase()} · ${job.progress}%")
        OutlinedButton(onClick = cancel) { Text("Cancel") }
    } else {
        when (job?.state) {
            JobState.FAILED -> Text("Failed: ${job.failure ?: "unknown"}", color = MaterialTheme.colorScheme.error)
            JobState.CANCELLED -> Text("Cancelled.")
            else -> {}
        }
        Button(onClick = start) { Text(if (job == null) "Start" else "Start again") }
    }
}

/** The MP4 from its signed link, in Media3's player. */
@Composable
private fun Player(url: String) {
    val context = LocalContext.current
    val player = remember(url) {
        ExoPlayer.Builder(context).build().apply {
            setMediaItem(MediaItem.fromUri(url))
            prepare()
        }
    }
    DisposableEffect(player) { onDispose { player.release() } }
    AndroidView(factory = { PlayerView(it).apply { this.player = player } }, modifier = Modifier.fillMaxWidth().aspectRatio(16f / 9f))
}
