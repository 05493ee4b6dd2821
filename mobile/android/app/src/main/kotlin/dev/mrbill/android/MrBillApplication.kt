package dev.mrbill.android

import android.app.Application
import dev.mrbill.core.MrBill
import dev.mrbill.viewmodel.AppModel
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob

/** One core and one app model for the process: every screen's model comes from [app]. */
class MrBillApplication : Application() {
    lateinit var app: AppModel
        private set

    override fun onCreate() {
        super.onCreate()
        val core = MrBill(BuildConfig.ROUTER_URL, KeystoreTokenStore(this))
        app = AppModel(core, CoroutineScope(SupervisorJob() + Dispatchers.Main.immediate))
        app.start()
    }
}
