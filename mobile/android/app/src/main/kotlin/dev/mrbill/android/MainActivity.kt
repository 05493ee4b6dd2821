package dev.mrbill.android

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import dev.mrbill.android.ui.MrBillRoot
import dev.mrbill.android.ui.MrBillTheme

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        val app = (application as MrBillApplication).app
        setContent {
            MrBillTheme {
                MrBillRoot(app, calls = { WebRtcCallEngine(applicationContext) })
            }
        }
    }
}
