// wav2lip-uhq: Ctrl+Enter (Cmd+Enter on macOS) starts a run, and tooltips for the tab's settings.
//
// Loaded into every page of the Stable Diffusion WebUI, whose global namespace all extensions share:
// the only global defined here is `wav2lipUhq`. Also works in the standalone app, where the WebUI's
// helpers (gradioApp, onUiLoaded, onAfterUiUpdate, get_uiCurrentTabContent) do not exist. Missing
// elements are skipped: nothing here throws when the tab is absent or hidden.
(function () {
    "use strict";

    if (typeof window === "undefined" || window.wav2lipUhq) {
        return; // loaded twice (two copies of the extension): the first one is enough
    }

    var PREFIX = "wav2lip_uhq_";
    var nav = typeof navigator !== "undefined" ? navigator : {};
    var platform = (nav.userAgentData && nav.userAgentData.platform) || nav.platform || "";
    var IS_MAC = /mac|iphone|ipad|ipod/i.test(platform);
    var KEY_HINT = IS_MAC ? "\u2318+Enter" : "Ctrl+Enter";

    // Tooltips by elem_id (without the prefix); see wav2lip_uhq/ui.py.
    var TIPS = {
        mode: "fast: upstream Wav2Lip, whole face box. feather: soft rectangle. improved: lips, chin and " +
            "cheeks only, blended along face landmarks (default). enhanced: improved + face restoration. " +
            "uhq: improved + Stable Diffusion refinement of the mouth.",
        checkpoint: "Wav2Lip model. wav2lip_gan: sharper mouth (default); wav2lip: most accurate sync, blurrier.",
        checkpoint_refresh: "Rescan the models folder for checkpoints.",
        allow_download: "Download a missing released checkpoint (Wav2Lip, S3FD, FAN) on first use.",
        detector: "s3fd: accurate neural face detector (faster on a GPU). dlib: HOG detector, CPU only, " +
            "misses small or turned faces.",
        smoothing: "Smooth the face box over time. centered: no lag (default); upstream: 5-frame forward " +
            "mean, as the original; none: raw boxes.",
        pad_top: "Pixels added above the detected face box.",
        pad_bottom: "Pixels added below the face box; include the chin (upstream default 10).",
        pad_left: "Pixels added left of the face box.",
        pad_right: "Pixels added right of the face box.",
        face_index: "Which face to sync when there are several: -1 the largest, 0 the leftmost, 1 the next...",
        box: "Fixed face box in pixels (top bottom left right) for every frame; empty: detect the face.",
        mask_region: "What is replaced: lower_face (lips, chin, lower cheeks) or mouth only.",
        blend: "How the new mouth is merged: alpha (soft mask), laplacian (multi-band, hides seams), " +
            "poisson (matches lighting, slower).",
        mask_dilate: "Grow (+) or shrink (-) the mask, as a fraction of the face width.",
        mask_feather: "Width of the soft mask edge, as a fraction of the face width.",
        colour_match: "Match the colours of the new mouth to the original frame.",
        regrain: "Add the original video's grain to the new mouth, which is smoother than the video.",
        aligned: "Rotate tilted heads upright for the model, then back: better sync on tilted faces.",
        sharpen: "Sharpen the new mouth (unsharp mask amount); 0: off.",
        silence: "On silent audio: off (as generated), close (closed mouth), keep (the original frame).",
        restorer: "Face restoration checkpoint (GFPGAN, CodeFormer, RestoreFormer); empty: GFPGAN v1.4.",
        restore_strength: "0: no restoration, 1: fully restored (applied inside the mouth mask only).",
        fidelity: "CodeFormer only: higher keeps closer to the input, lower restores more.",
        upscaler: "Optional super-resolution checkpoint applied to the 96 px mouth before blending.",
        sd_checkpoint: "Stable Diffusion 1.5 model that refines the mouth.",
        prompt: "Describes the refined mouth; keep it about lips and teeth.",
        negative_prompt: "What the refinement should avoid.",
        denoise: "How much Stable Diffusion may change the mouth. Low (0.2-0.4) keeps the lip sync.",
        steps: "Sampling steps for each frame's refinement.",
        cfg: "How strongly the refinement follows the prompt.",
        sampler: "Sampler used for the refinement.",
        seed: "Fixed seed for every frame: a fixed seed reduces flicker.",
        controlnet: "ControlNet model that keeps the lip shape during refinement; empty: none.",
        controlnet_preprocessor: "How the control image is made from the mouth crop (canny: lip outline).",
        controlnet_weight: "Strength of the ControlNet.",
        controlnet_start: "Fraction of the steps at which the ControlNet starts.",
        controlnet_end: "Fraction of the steps at which the ControlNet stops.",
        crf: "Video quality (H.264 CRF): lower is better and larger; 16 is visually lossless.",
        extra_outputs: "Also write these beside the result, from the same pass: raw generator paste, the frame before restoration/refinement, the debug overlay, the mask as a ProRes 4444 layer (.mov) or RGBA PNGs.",
        batch_size: "Frames processed at once; lower it if you run out of memory.",
        preview_frame: "Frame number to preview.",
        preview: "Process one frame with the current settings and show it with its mask and landmarks.",
        interrupt: "Stop the running job.",
        recent: "Open an earlier result and its settings.",
        face_image: "A face picture: drop or paste it, take it with the webcam, or send it here from " +
            "txt2img, img2img or Extras. It becomes the face input.",
        text: "Text to speak instead of an audio file. Long text is split at sentence ends, with a pause " +
            "after each sentence.",
        tts_engine: "espeak: offline voice, built in. piper: natural neural voices, downloaded into the " +
            "models folder on first use.",
        tts_language: "Show the voices of this language.",
        voice: "The voice that speaks the text.",
        tts_speed: "Speaking rate: 1 is normal, 2 twice as fast.",
        tts_pause: "Silence between sentences, in seconds.",
        speak: "Speak the text now and put the audio into the audio player, to hear it before the lip sync.",
        ranges: "Lip-sync only these times: START-END[@OFFSET] in seconds or m:ss, comma-separated (END " +
            "empty: to the end; OFFSET: where in the speech the range starts). The rest of the video and its " +
            "own audio pass through untouched.",
        delay: "Seconds before the speech starts: at the start of the run, or of each range.",
        face_pick: "Whose face a click on the preview sets: speaker 1 (the audio above) or speakers 2-5.",
        speaker2_audio: "A second voice, for another face in the same shot; the voices are mixed.",
        speaker2_face: "The face speaker 2 moves: 0 the leftmost, 1 the next... (-1 the largest); or click " +
            "it in the preview.",
        speaker2_ranges: "Speaker 2's own time ranges; empty: the run's ranges (or the whole run).",
        send_to_img2img: "Send the preview frame to img2img.",
        send_to_extras: "Send the preview frame to Extras (upscaling, face restoration)."
    };

    function root() {
        if (typeof gradioApp === "function") {
            try {
                var app = gradioApp();
                if (app) {
                    return app;
                }
            } catch (err) {
                // no <gradio-app> yet: use the document
            }
        }
        return document;
    }

    function byId(name) {
        var id = PREFIX + name;
        var r = root();
        var el = null;
        if (r && typeof r.getElementById === "function") {
            el = r.getElementById(id);
        } else if (r && typeof r.querySelector === "function") {
            el = r.querySelector("#" + id);
        }
        if (!el && r !== document && typeof document !== "undefined" && document.getElementById) {
            el = document.getElementById(id);
        }
        return el || null;
    }

    // gradio puts elem_id on the <button> itself; be tolerant of a wrapper.
    function runButton() {
        var el = byId("run");
        if (el && el.tagName !== "BUTTON" && typeof el.querySelector === "function") {
            el = el.querySelector("button") || el;
        }
        return el;
    }

    // Our tab is the one shown (WebUI), or the button is laid out on the page (standalone app).
    function isShown(el) {
        if (typeof get_uiCurrentTabContent === "function") {
            var tab = null;
            try {
                tab = get_uiCurrentTabContent();
            } catch (err) {
                tab = null;
            }
            if (tab && typeof tab.contains === "function") {
                return tab.contains(el);
            }
        }
        if (typeof el.getClientRects === "function") {
            return el.getClientRects().length > 0;
        }
        return true;
    }

    function setTitle(el, text) {
        if (el && !el.title) {
            el.title = text;
        }
    }

    function applyTooltips() {
        for (var key in TIPS) {
            if (Object.prototype.hasOwnProperty.call(TIPS, key)) {
                setTitle(byId(key), TIPS[key]);
            }
        }
        var run = runButton();
        if (run) {
            setTitle(run, "Start lip sync (" + KEY_HINT + ")");
            if (typeof run.setAttribute === "function") {
                run.setAttribute("aria-keyshortcuts", IS_MAC ? "Meta+Enter" : "Control+Enter");
            }
        }
    }

    // Ctrl+Enter / Cmd+Enter: click Run when our tab is visible. Registered on window in the capture
    // phase so that it runs before the WebUI's own Ctrl+Enter handler (which looks for a *_generate
    // button our tab does not have) and before a focused textbox inserts a newline.
    function onKeyDown(e) {
        if (!e || e.altKey || e.shiftKey || !(e.ctrlKey || e.metaKey)) {
            return false;
        }
        if (e.key !== "Enter" && e.keyCode !== 13) {
            return false;
        }
        var run = runButton();
        if (!run || run.disabled || !isShown(run)) {
            return false;
        }
        if (typeof e.preventDefault === "function") {
            e.preventDefault();
        }
        if (typeof e.stopPropagation === "function") {
            e.stopPropagation();
        }
        if (!e.repeat && typeof run.click === "function") {
            run.click();
        }
        return true;
    }

    var pending = null;
    function applySoon() {
        if (pending === null) {
            pending = setTimeout(function () {
                pending = null;
                applyTooltips();
            }, 250);
        }
    }

    function start() {
        if (typeof window.addEventListener === "function") {
            window.addEventListener("keydown", onKeyDown, true);
        }
        if (typeof onUiLoaded === "function") { // the WebUI
            onUiLoaded(applyTooltips);
            if (typeof onAfterUiUpdate === "function") { // debounced by the WebUI
                onAfterUiUpdate(applyTooltips);
            } else if (typeof onUiUpdate === "function") {
                onUiUpdate(applySoon);
            }
            return;
        }
        // Standalone app: gradio renders the page after this script runs, and again on updates
        // (gradio 4+ adds components that become visible).
        applyTooltips();
        if (typeof MutationObserver === "function" && document.documentElement) {
            new MutationObserver(applySoon).observe(document.documentElement, {childList: true, subtree: true});
        } else if (document.readyState === "loading" && document.addEventListener) {
            document.addEventListener("DOMContentLoaded", applyTooltips);
        }
    }

    // The WebUI's "Send to" buttons switch tabs by calling switch_to_<tab name>() (infotext_utils'
    // connect_paste_params_buttons): the one global outside our prefix, named as that requires.
    window.switch_to_wav2lip_uhq = function () {
        var r = root();
        var tabs = r && typeof r.querySelector === "function" ? r.querySelector("#tabs") : null;
        var buttons = tabs && typeof tabs.querySelectorAll === "function" ? tabs.querySelectorAll("button") : [];
        for (var i = 0; i < buttons.length; i++) {
            if ((buttons[i].textContent || "").trim() === "Wav2Lip UHQ") {
                buttons[i].click();
                break;
            }
        }
        return Array.prototype.slice.call(arguments);
    };

    window.wav2lipUhq = {
        tips: TIPS,
        keyHint: KEY_HINT,
        applyTooltips: applyTooltips,
        onKeyDown: onKeyDown
    };
    start();
})();
