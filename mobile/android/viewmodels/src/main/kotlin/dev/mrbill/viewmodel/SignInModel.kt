package dev.mrbill.viewmodel

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** The sign-in screen's forms. */
enum class SignInMode {
    /** Email and password. */
    LOGIN,

    /** An account from an invite (the token from the invite mail or link). */
    REGISTER,

    /** Open sign-up (companies that allow it): a code is mailed. */
    SIGN_UP,

    /** The mailed sign-up code. */
    CONFIRM,

    /** Ask for a reset code by mail. */
    FORGOT,

    /** The mailed reset code and a new password. */
    RESET,
}

data class SignInState(
    val mode: SignInMode = SignInMode.LOGIN,
    val email: String = "",
    val password: String = "",
    val invite: String = "",
    val code: String = "",
    val newPassword: String = "",
    val busy: Boolean = false,
    val problem: Problem? = null,
    /** What happened (a code was mailed, the password was reset). */
    val notice: String? = null,
    /** Until when (ms since the epoch) the server's throttle refuses another attempt. */
    val blockedUntilMs: Long = 0,
) {
    /** Inline messages per field (`email`, `password`, `invite_token`, `code`, …). */
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()

    /** Seconds left before another attempt is allowed (0: now). */
    fun waitSecs(nowMs: Long = System.currentTimeMillis()): Long = maxOf(0, (blockedUntilMs - nowMs + 999) / 1000)
}

/** Sign in, register with an invite, open sign-up with a mailed code, forgot/reset password. */
class SignInModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(SignInState())
    val state: StateFlow<SignInState> = state_.asStateFlow()

    fun show(mode: SignInMode) = state_.update { it.copy(mode = mode, problem = null, notice = null) }
    fun setEmail(text: String) = state_.update { it.copy(email = text) }
    fun setPassword(text: String) = state_.update { it.copy(password = text) }
    fun setInvite(text: String) = state_.update { it.copy(invite = text) }
    fun setCode(text: String) = state_.update { it.copy(code = text) }
    fun setNewPassword(text: String) = state_.update { it.copy(newPassword = text) }

    /** Does what the current form is for. Refused while the throttle says to wait. */
    fun submit() {
        val form = state_.value
        if (form.busy || form.waitSecs() > 0) return
        state_.update { it.copy(busy = true, problem = null, notice = null) }
        act(::failed) {
            val core = app.core
            val email = form.email.trim()
            when (form.mode) {
                SignInMode.LOGIN -> app.signedIn(core.login(email, form.password))
                SignInMode.REGISTER -> app.signedIn(core.register(email, form.password, form.invite.trim()))
                SignInMode.SIGN_UP -> {
                    core.signUp(email, form.password)
                    done(SignInMode.CONFIRM, "We mailed a code to $email.")
                }
                SignInMode.CONFIRM -> app.signedIn(core.confirmEmail(email, form.code.trim()))
                SignInMode.FORGOT -> {
                    core.forgotPassword(email)
                    done(SignInMode.RESET, "If $email has an account, a reset code is on its way.")
                }
                SignInMode.RESET -> {
                    core.resetPassword(form.code.trim(), form.newPassword)
                    state_.update { it.copy(password = "", newPassword = "", code = "") }
                    done(SignInMode.LOGIN, "Your password was changed. Sign in with the new one.")
                }
            }
            state_.update { it.copy(busy = false) }
        }
    }

    private fun done(next: SignInMode, notice: String) =
        state_.update { it.copy(mode = next, busy = false, notice = notice) }

    private fun failed(problem: Problem) = state_.update {
        val blocked = (problem as? Problem.TooManyAttempts)?.let { p -> System.currentTimeMillis() + p.retryAfterSecs * 1000 }
        it.copy(busy = false, problem = problem, blockedUntilMs = blocked ?: it.blockedUntilMs)
    }
}
