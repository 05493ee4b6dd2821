package dev.mrbill.viewmodel

import dev.mrbill.core.CoreException
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch

/**
 * What every screen's model shares: its own coroutine scope (a child of the app's, cancelled by
 * [close] when the screen goes: Android's `ViewModel.onCleared`, SwiftUI's `onDisappear`), and
 * one way to run an action — a core error becomes a [Problem] for the screen, and a session that
 * ended signs the whole app out.
 */
abstract class ScreenModel(protected val app: AppModel) : AutoCloseable {
    protected val scope: CoroutineScope =
        CoroutineScope(app.scope.coroutineContext + SupervisorJob(app.scope.coroutineContext[Job]))

    /** Runs [work] in the screen's scope; a core error goes to [onProblem]. */
    protected fun act(onProblem: (Problem) -> Unit, work: suspend () -> Unit): Job = scope.launch {
        try {
            work()
        } catch (e: CoreException) {
            val problem = e.toProblem()
            when (problem) {
                Problem.SignedOut -> app.sessionEnded()
                Problem.Suspended -> app.companySuspended()
                else -> {}
            }
            onProblem(problem)
        }
    }

    override fun close() {
        scope.cancel()
    }
}
