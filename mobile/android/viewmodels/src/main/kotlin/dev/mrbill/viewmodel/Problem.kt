package dev.mrbill.viewmodel

import dev.mrbill.core.CoreException
import kotlinx.coroutines.delay

/** What went wrong, as a screen shows it: one case per thing the user can do about it. */
sealed interface Problem {
    /** The server cannot be reached (no network, the server restarting): "try again". */
    data class Offline(val reason: String) : Problem

    /** No company by that name or work-email domain. */
    data object NoSuchCompany : Problem

    /** The company's account is suspended: nothing to do in the app; the screen says whom to ask. */
    data object Suspended : Problem

    /** The session ended (signed out elsewhere, password changed, account disabled). */
    data object SignedOut : Problem

    data object WrongPassword : Problem

    /** Refused input: a message per field, keyed by the form's field (`tags[2]` → `tags`). */
    data class Invalid(val fields: Map<String, String>) : Problem

    data object NotFound : Problem

    /** Not allowed, and [code] says why (`invalid_invite`, `registration_closed`, `forbidden`, …). */
    data class Refused(val code: String, val detail: String) : Problem

    /** Too many attempts: the screen counts down [retryAfterSecs] before allowing another. */
    data class TooManyAttempts(val retryAfterSecs: Long) : Problem

    /** The server failed or is busy: "try again later". */
    data class ServerTrouble(val code: String) : Problem
}

/** The problem a core error means for a screen. */
fun CoreException.toProblem(): Problem = when (this) {
    is CoreException.Network -> Problem.Offline(reason)
    is CoreException.CompanyNotFound -> Problem.NoSuchCompany
    is CoreException.NoCompany, is CoreException.SignedOut -> Problem.SignedOut
    is CoreException.InvalidCredentials -> Problem.WrongPassword
    is CoreException.Validation -> Problem.Invalid(fieldMessages(fields.map { it.field to it.message }))
    is CoreException.NotFound -> Problem.NotFound
    is CoreException.Refused -> Problem.Refused(code, detail)
    is CoreException.TenantSuspended -> Problem.Suspended
    is CoreException.RateLimited -> Problem.TooManyAttempts(retryAfterSecs.toLong())
    is CoreException.Server -> Problem.ServerTrouble(code)
}

/** Field messages keyed by the form field: the first segment of the API's JSON path. */
fun fieldMessages(fields: List<Pair<String, String>>): Map<String, String> =
    fields.groupBy({ it.first.substringBefore('[').substringBefore('.') }, { it.second })
        .mapValues { (_, messages) -> messages.distinct().joinToString("; ") }

/**
 * Runs [call], retrying when the server cannot be reached or fails (a restart, a deploy) with
 * backoff: [firstDelayMs], doubling, [attempts] tries in all. For reads only: a write that
 * failed on the way back may have been applied.
 */
suspend fun <T> withRetry(
    attempts: Int = 4,
    firstDelayMs: Long = 500,
    onRetry: (attempt: Int, problem: Problem) -> Unit = { _, _ -> },
    call: suspend () -> T,
): T {
    var wait = firstDelayMs
    repeat(attempts - 1) { attempt ->
        try {
            return call()
        } catch (e: CoreException) {
            val problem = e.toProblem()
            if (problem !is Problem.Offline && problem !is Problem.ServerTrouble) throw e
            onRetry(attempt + 1, problem)
            delay(wait)
            wait *= 2
        }
    }
    return call()
}
