package dev.mrbill.viewmodel

import dev.mrbill.core.Company
import dev.mrbill.core.CoreException
import dev.mrbill.core.MrBillInterface
import dev.mrbill.wire.Dojo
import dev.mrbill.wire.User
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.launch

/** Where the app is: which part of it the user can see. */
sealed interface AppState {
    /** Reading the stored session (a splash). */
    data object Starting : AppState

    /** The company screen: slug or work email. */
    data object ChoosingCompany : AppState

    /** Sign-in / register for [company]; [notice] says why when the session just ended. */
    data class SigningIn(val company: Company, val notice: String? = null) : AppState

    data class SignedIn(val company: Company, val user: User) : AppState

    /** The company's account is suspended: a screen that says so, and a way to pick another. */
    data class Suspended(val company: Company) : AppState
}

/**
 * The app's root: the session state every screen depends on, and the factory of the screens'
 * models (each gets the app, to sign it out when its session ends). Platform code creates one
 * with the core and a scope on the main thread (Android: `Dispatchers.Main`; iOS: the main actor).
 */
class AppModel(val core: MrBillInterface, val scope: CoroutineScope) {
    private val state_ = MutableStateFlow<AppState>(AppState.Starting)
    val state: StateFlow<AppState> = state_.asStateFlow()

    /** Picks up a stored session (the app was restarted) or starts at the company screen. */
    fun start() {
        val company = core.company()
        if (company == null) {
            state_.value = AppState.ChoosingCompany
            return
        }
        if (!core.signedIn()) {
            state_.value = AppState.SigningIn(company)
            return
        }
        scope.launch {
            state_.value = try {
                AppState.SignedIn(company, withRetry { core.me() })
            } catch (e: CoreException) {
                when (e.toProblem()) {
                    Problem.Suspended -> AppState.Suspended(company)
                    // Offline at launch: sign in again once the server is back.
                    Problem.SignedOut -> AppState.SigningIn(company, "Your session ended. Sign in again.")
                    else -> AppState.SigningIn(company, "The server cannot be reached. Try again.")
                }
            }
        }
    }

    internal fun companyChosen(company: Company) {
        state_.value = if (company.suspended) AppState.Suspended(company) else AppState.SigningIn(company)
    }

    internal fun signedIn(user: User) {
        val company = core.company() ?: return run { state_.value = AppState.ChoosingCompany }
        state_.value = AppState.SignedIn(company, user)
    }

    /** The user's profile changed (name): screens showing it follow. */
    internal fun userChanged(user: User) {
        val now = state_.value
        if (now is AppState.SignedIn) state_.value = now.copy(user = user)
    }

    /** The session ended under a screen (revoked, expired, password changed elsewhere). */
    internal fun sessionEnded() {
        val company = core.company() ?: return run { state_.value = AppState.ChoosingCompany }
        if (state_.value !is AppState.SigningIn) {
            state_.value = AppState.SigningIn(company, "Your session ended. Sign in again.")
        }
    }

    internal fun companySuspended() {
        core.company()?.let { state_.value = AppState.Suspended(it) }
    }

    /** Signs out here and on the server. */
    fun signOut() {
        scope.launch {
            try {
                core.logout()
            } catch (_: CoreException) {
                // Signed out here regardless; the server forgets the token when it expires.
            }
            val company = core.company()
            state_.value = if (company == null) AppState.ChoosingCompany else AppState.SigningIn(company)
        }
    }

    /** Back to the company screen (another company). */
    fun switchCompany() {
        state_.value = AppState.ChoosingCompany
    }

    fun companyScreen() = CompanyModel(this)
    fun signInScreen() = SignInModel(this)
    fun accountScreen() = AccountModel(this)
    fun pocList() = PocListModel(this)

    /** A PoC's detail/edit screen, or a new one when [id] is null. */
    fun pocEditor(id: String?) = PocEditorModel(this, id)
    fun dashboard() = DashboardModel(this)
    fun reports() = ReportModel(this)
    fun video() = VideoModel(this)
    fun dojos() = DojosModel(this)

    /** A dojo's room; [call] is the platform's WebRTC stack (null: no calls on this device). */
    fun dojoRoom(dojo: Dojo, call: CallEngine?) = DojoRoomModel(this, dojo, call)
}
