package dev.mrbill.viewmodel

import dev.mrbill.wire.User
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

data class AccountState(
    val user: User? = null,
    val displayName: String = "",
    val currentPassword: String = "",
    val newPassword: String = "",
    val busy: Boolean = false,
    val problem: Problem? = null,
    val notice: String? = null,
) {
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()
}

/** The profile (display name) and changing the password. */
class AccountModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(AccountState())
    val state: StateFlow<AccountState> = state_.asStateFlow()

    init {
        act(::failed) {
            val user = withRetry { app.core.me() }
            state_.update { it.copy(user = user, displayName = user.displayName) }
        }
    }

    fun setDisplayName(text: String) = state_.update { it.copy(displayName = text) }
    fun setCurrentPassword(text: String) = state_.update { it.copy(currentPassword = text) }
    fun setNewPassword(text: String) = state_.update { it.copy(newPassword = text) }

    fun saveProfile() = run("Profile saved.") {
        val user = app.core.updateProfile(state_.value.displayName.trim())
        app.userChanged(user)
        state_.update { it.copy(user = user, displayName = user.displayName) }
    }

    /** Other devices are signed out; this one continues. */
    fun changePassword() = run("Password changed. Your other devices were signed out.") {
        val form = state_.value
        app.core.changePassword(form.currentPassword, form.newPassword)
        state_.update { it.copy(currentPassword = "", newPassword = "") }
    }

    private fun run(notice: String, work: suspend () -> Unit) {
        if (state_.value.busy) return
        state_.update { it.copy(busy = true, problem = null, notice = null) }
        act(::failed) {
            work()
            state_.update { it.copy(busy = false, notice = notice) }
        }
    }

    private fun failed(problem: Problem) = state_.update { it.copy(busy = false, problem = problem) }
}
