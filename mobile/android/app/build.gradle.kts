plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "dev.mrbill.android"
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.mrbill.android"
        minSdk = 26
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
        // The router every company is found through; override per build type or flavour.
        buildConfigField("String", "ROUTER_URL", "\"https://api.mrbill.dev\"")
    }

    buildTypes {
        debug {
            // The emulator reaches `./x dev` on the host at 10.0.2.2 (cleartext allowed for it only:
            // res/xml/network_security_config.xml).
            buildConfigField("String", "ROUTER_URL", "\"http://10.0.2.2:8080\"")
        }
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    // libmrbill_core.so per ABI, built by ../build-core.sh (cargo-ndk).
    sourceSets["main"].jniLibs.srcDir("src/main/jniLibs")

    buildFeatures {
        compose = true
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    implementation(project(":viewmodels"))
    implementation("${libs.jna.get()}@aar")
    implementation(libs.kotlinx.coroutines.android)
    implementation(platform(libs.compose.bom))
    implementation(libs.compose.material3)
    implementation(libs.compose.material.icons)
    implementation(libs.compose.ui)
    implementation(libs.compose.ui.tooling.preview)
    debugImplementation(libs.compose.ui.tooling)
    implementation(libs.activity.compose)
    implementation(libs.lifecycle.viewmodel.compose)
    implementation(libs.lifecycle.runtime.compose)
    implementation(libs.navigation.compose)
    implementation(libs.media3.exoplayer)
    implementation(libs.media3.ui)
    implementation(libs.coil.compose)
    implementation(libs.webrtc)
}
