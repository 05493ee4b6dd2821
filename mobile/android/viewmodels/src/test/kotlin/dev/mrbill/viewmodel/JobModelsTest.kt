package dev.mrbill.viewmodel

import dev.mrbill.wire.JobState
import dev.mrbill.wire.PocInput
import dev.mrbill.wire.ReportFormat
import dev.mrbill.wire.Visibility
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.util.concurrent.CopyOnWriteArrayList

/** The dashboard, a report and the yearly video through their screens' models. */
class JobModelsTest {
    private fun status(url: String): Int = HttpClient.newHttpClient()
        .send(HttpRequest.newBuilder(URI(url)).build(), HttpResponse.BodyHandlers.discarding()).statusCode()

    @Test
    fun theDashboardAReportAndTheYearlyVideoWatchedToDone() = runBlocking {
        val app = Platform.signedIn()
        app.core.createPoc(PocInput("Video star", "", "https://github.com/acme/video-star", "kotlin", listOf("mobile"), listOf(), Visibility.TENANT))

        val dashboard = app.dashboard()
        val figures = dashboard.state.await("the dashboard") { !it.loading && it.dashboard != null }
        assertTrue(figures.dashboard!!.total >= 1uL)
        assertTrue(figures.languages.any { it.label == "kotlin" })
        assertEquals(1.0f, figures.months.maxOf { it.fraction })

        val report = app.reports()
        report.setFormat(ReportFormat.CSV)
        report.start()
        val csv = report.state.await("the report done", 60_000) { it.job?.state == JobState.COMPLETED }
        assertEquals(200, status(csv.downloadUrl!!))
        assertTrue(csv.contentType!!.startsWith("text/csv"))

        val video = app.video()
        val seen = CopyOnWriteArrayList<Int>()
        val watcher = CoroutineScope(Dispatchers.Default).launch {
            video.state.collect { s -> s.job?.progress?.let { if (seen.lastOrNull() != it) seen.add(it) } }
        }
        video.setTitle("Our year")
        video.start()
        val done = video.state.await("the video done", 120_000) { it.job?.state == JobState.COMPLETED }
        watcher.cancel()
        assertEquals(200, status(done.playUrl!!))
        assertEquals(200, status(done.thumbnailUrl!!))
        assertTrue(done.shareText!!.contains(done.playUrl!!))
        // The watcher sees states as it gets to them (a StateFlow keeps only the latest), so
        // the end is read from the final state itself.
        assertTrue("progress seen before the end: $seen", seen.first() < 100)
        assertEquals(100, done.job!!.progress)
        listOf(dashboard, report, video).forEach { it.close() }
    }
}
