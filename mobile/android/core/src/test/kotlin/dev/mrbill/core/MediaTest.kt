package dev.mrbill.core

import dev.mrbill.wire.CreateReport
import dev.mrbill.wire.CreateVideo
import dev.mrbill.wire.GroupBy
import dev.mrbill.wire.JobState
import dev.mrbill.wire.PocInput
import dev.mrbill.wire.ReportFormat
import dev.mrbill.wire.Visibility
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.util.Calendar
import java.util.concurrent.CopyOnWriteArrayList

/** What a watched job reported. */
class Progress : JobListener {
    val seen = CopyOnWriteArrayList<Pair<JobState, UByte>>()
    override fun onProgress(state: JobState, progress: UByte) { seen.add(state to progress) }
}

/** A report and the yearly video, started from the app, watched until done, and opened by
 * their absolute links. */
class MediaTest {
    private val router = System.getProperty("mrbill.router")
    private val tenant = System.getProperty("mrbill.tenant")
    private val email = System.getProperty("mrbill.email")
    private val password = System.getProperty("mrbill.password")
    private val http = HttpClient.newHttpClient()

    private fun fetch(url: String): HttpResponse<ByteArray> =
        http.send(HttpRequest.newBuilder(URI(url)).build(), HttpResponse.BodyHandlers.ofByteArray())

    @Test
    fun aReportAndAVideoAreWatchedUntilDoneAndOpened() = runBlocking {
        val core = MrBill(router, MemoryTokenStore())
        core.resolve(tenant)
        core.login(email, password)
        core.createPoc(PocInput(
            name = "Media from Kotlin", description = "", repositoryUrl = "https://github.com/acme/media-kt",
            language = "kotlin", tags = listOf("mobile"), frameworks = listOf(), visibility = Visibility.TENANT,
        ))

        val started = core.startReport(CreateReport(
            format = ReportFormat.CSV, from = null, to = null, tags = listOf(), excludeTags = listOf(),
            groupBy = GroupBy.LANGUAGE,
        ))
        val progress = Progress()
        val report = core.watchReport(started.id, progress)
        assertEquals(JobState.COMPLETED, report.status.state)
        assertEquals(JobState.COMPLETED, progress.seen.last().first)
        val csv = fetch(report.download!!.url)
        assertEquals(200, csv.statusCode())
        assertTrue(String(csv.body()).contains("Media from Kotlin"))

        val year = Calendar.getInstance().get(Calendar.YEAR)
        val video = core.watchVideo(
            core.startVideo(CreateVideo(year = year, title = "Our year", tags = listOf(), excludeTags = listOf())).id,
            Progress(),
        )
        assertEquals(JobState.COMPLETED, video.status.state)
        val mp4 = fetch(video.download!!.url)
        assertEquals(200, mp4.statusCode())
        assertTrue("an MP4", String(mp4.body().copyOfRange(4, 8)) == "ftyp")
        assertEquals(200, fetch(video.thumbnail!!.url).statusCode())

        try {
            core.report("not-a-job")
            throw AssertionError("a malformed id")
        } catch (e: CoreException.Validation) {
        }
    }
}
