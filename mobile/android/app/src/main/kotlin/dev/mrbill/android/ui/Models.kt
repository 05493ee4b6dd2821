package dev.mrbill.android.ui

import androidx.compose.runtime.Composable
import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewmodel.compose.viewModel
import dev.mrbill.viewmodel.Problem
import dev.mrbill.viewmodel.ScreenModel

/** Keeps a screen's model across configuration changes; closes it when the screen goes. */
class Held<T : ScreenModel>(val model: T) : ViewModel() {
    override fun onCleared() = model.close()
}

/** The screen's model, made once per navigation entry ([key] tells entries apart). */
@Composable
inline fun <reified T : ScreenModel> screenModel(key: String? = null, crossinline make: () -> T): T =
    viewModel<Held<T>>(key = key ?: T::class.java.name) { Held(make()) }.model

/** What a problem says to the user. */
fun Problem.text(): String = when (this) {
    is Problem.Offline -> "Cannot reach Mr. Bill. Check your connection and try again."
    Problem.NoSuchCompany -> "No company by that name or email domain."
    Problem.Suspended -> "This company's account is suspended. Ask your administrator."
    Problem.SignedOut -> "Your session ended. Sign in again."
    Problem.WrongPassword -> "Wrong email or password."
    is Problem.Invalid -> "Check the highlighted fields."
    Problem.NotFound -> "Not found (it may have been deleted)."
    is Problem.Refused -> when (code) {
        "invalid_invite" -> "This invite is not valid any more (used, revoked or expired). Ask for a new one."
        "registration_closed" -> "This company signs people up by invite only."
        "invalid_confirmation_code", "invalid_reset_token" -> "That code is wrong or expired."
        else -> detail.ifBlank { "Not allowed." }
    }
    is Problem.TooManyAttempts -> "Too many attempts. Try again in $retryAfterSecs s."
    is Problem.ServerTrouble -> "Mr. Bill could not answer just now. Try again."
}
