package dev.mrbill.viewmodel

import dev.mrbill.core.JobListener
import dev.mrbill.wire.CreateReport
import dev.mrbill.wire.CreateVideo
import dev.mrbill.wire.GroupBy
import dev.mrbill.wire.JobState
import dev.mrbill.wire.JobStatus
import dev.mrbill.wire.Report
import dev.mrbill.wire.ReportFormat
import dev.mrbill.wire.Video
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import java.util.Calendar

/** A report or video job as its screen shows it. */
data class JobView(
    val id: String,
    val state: JobState,
    /** 0–100. */
    val progress: Int,
    /** Why it failed (the job's stable error code's message), when it did. */
    val failure: String? = null,
) {
    val running: Boolean get() = state == JobState.PENDING || state == JobState.PROCESSING

    companion object {
        /** Progress on the way: an end state waits for the finished record (with its links),
         * so a completed job always has them. */
        fun moving(id: String, state: JobState, progress: Int) =
            JobView(id, if (state == JobState.PENDING) state else JobState.PROCESSING, progress)

        fun of(id: String, status: JobStatus) =
            JobView(id, status.state, status.progress.toInt(), status.error?.message)
    }
}

/** Progress from the core's watcher into a screen's state. */
private class Progress(private val onProgress: (JobState, Int) -> Unit) : JobListener {
    override fun onProgress(state: JobState, progress: UByte) = onProgress(state, progress.toInt())
}

data class ReportState(
    val format: ReportFormat = ReportFormat.PDF,
    val groupBy: GroupBy = GroupBy.LANGUAGE,
    /** Only PoCs with all these tags (comma-separated). */
    val tags: String = "",
    val job: JobView? = null,
    /** The finished report's absolute, signed, expiring link (open in the viewer / share). */
    val downloadUrl: String? = null,
    val contentType: String? = null,
    val problem: Problem? = null,
) {
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()
}

/** Reports: pick format and grouping, start, watch the progress, open the PDF/CSV. */
class ReportModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(ReportState())
    val state: StateFlow<ReportState> = state_.asStateFlow()

    fun setFormat(format: ReportFormat) = state_.update { it.copy(format = format) }
    fun setGroupBy(groupBy: GroupBy) = state_.update { it.copy(groupBy = groupBy) }
    fun setTags(text: String) = state_.update { it.copy(tags = text) }

    fun start() {
        val s = state_.value
        if (s.job?.running == true) return
        state_.update { it.copy(job = null, downloadUrl = null, problem = null) }
        act(::failed) {
            val tags = s.tags.split(',').map { it.trim() }.filter { it.isNotEmpty() }
            val started = app.core.startReport(CreateReport(format = s.format, from = null, to = null, tags = tags, excludeTags = listOf(), groupBy = s.groupBy))
            state_.update { it.copy(job = JobView.of(started.id, started.status)) }
            val done = app.core.watchReport(started.id, Progress { state, progress -> moved(started.id, state, progress) })
            finished(done)
        }
    }

    fun cancel() {
        val job = state_.value.job?.takeIf { it.running } ?: return
        act(::failed) { finished(app.core.cancelReport(job.id)) }
    }

    private fun moved(id: String, state: JobState, progress: Int) =
        state_.update { it.copy(job = JobView.moving(id, state, progress)) }

    private fun finished(report: Report) = state_.update {
        it.copy(job = JobView.of(report.id, report.status), downloadUrl = report.download?.url, contentType = report.download?.contentType)
    }

    private fun failed(problem: Problem) = state_.update { it.copy(problem = problem) }
}

data class VideoState(
    val year: Int = Calendar.getInstance().get(Calendar.YEAR),
    val title: String = "",
    val job: JobView? = null,
    /** The finished MP4's absolute link (play in the system player, share). */
    val playUrl: String? = null,
    val thumbnailUrl: String? = null,
    val durationSecs: Int? = null,
    val problem: Problem? = null,
) {
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()

    /** What the share sheet sends. */
    val shareText: String? get() = playUrl?.let { "Our $year in PoCs: $it" }
}

/** The yearly video: start, watch the render's progress, play and share. */
class VideoModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(VideoState())
    val state: StateFlow<VideoState> = state_.asStateFlow()

    fun setYear(year: Int) = state_.update { it.copy(year = year) }
    fun setTitle(text: String) = state_.update { it.copy(title = text) }

    fun start() {
        val s = state_.value
        if (s.job?.running == true) return
        state_.update { it.copy(job = null, playUrl = null, thumbnailUrl = null, problem = null) }
        act(::failed) {
            val started = app.core.startVideo(CreateVideo(year = s.year, title = s.title.trim().ifEmpty { null }, tags = listOf(), excludeTags = listOf()))
            state_.update { it.copy(job = JobView.of(started.id, started.status)) }
            val done = app.core.watchVideo(started.id, Progress { state, progress -> moved(started.id, state, progress) })
            finished(done)
        }
    }

    fun cancel() {
        val job = state_.value.job?.takeIf { it.running } ?: return
        act(::failed) { finished(app.core.cancelVideo(job.id)) }
    }

    private fun moved(id: String, state: JobState, progress: Int) =
        state_.update { it.copy(job = JobView.moving(id, state, progress)) }

    private fun finished(video: Video) = state_.update {
        it.copy(
            job = JobView.of(video.id, video.status),
            playUrl = video.download?.url,
            thumbnailUrl = video.thumbnail?.url,
            durationSecs = video.durationSecs?.toInt(),
        )
    }

    private fun failed(problem: Problem) = state_.update { it.copy(problem = problem) }
}
