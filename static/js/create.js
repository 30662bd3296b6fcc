// The create page: previews the photo framed exactly as the server will frame
// it, shows the sliders' values, and checks the photo, the seed and the
// credits before sending, with each message next to its field.
(function () {
  "use strict";
  var form = document.getElementById("create-form");
  if (!form) return;
  function $(id) { return document.getElementById(id); }

  var FRAMINGS = {landscape: [1024, 576], portrait: [576, 1024], square: [768, 768]};
  var SEED_MAX = 4294967294;
  var maxBytes = Number(form.dataset.maxBytes);
  var balance = Number(form.dataset.balance);
  var providers = {};
  JSON.parse($("provider-data").textContent).forEach(function (p) { providers[p.name] = p; });

  var fileInput = $("id_image");
  var reused = $("id_photo_from");  // "Run again with changes": the earlier video's photo, unless a file is chosen
  var canvas = $("preview");
  var picture = null;        // the decoded photo, once chosen
  var fileProblem = null;    // a message, or null when the file looks right
  var fileCheck = Promise.resolve();

  // --- messages next to fields ---
  function showError(id, message) {
    var el = $(id);
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  // --- sliders ---
  [["id_motion_bucket_id", "motion-value", 0], ["id_cfg_scale", "cfg-value", 1]].forEach(function (slider) {
    var input = $(slider[0]), output = $(slider[1]);
    input.addEventListener("input", function () { output.textContent = Number(input.value).toFixed(slider[2]); });
  });

  // --- the provider's own parameters (duration, fps...): one control each, set
  // up from the chosen provider's declaration (range, default, meaning) ---
  function decimals(step) {
    var text = String(step);
    return text.indexOf(".") < 0 ? 0 : text.length - text.indexOf(".") - 1;
  }

  function showValue(box) {
    var input = box.querySelector("input[type=range]"), output = box.querySelector("output");
    if (!input || !output) return;
    var unit = output.dataset.unit;
    output.textContent = Number(input.value).toFixed(decimals(input.step || 1)) + (unit ? " " + unit : "");
  }

  // Two providers may declare one name as different kinds (the local provider's
  // duration is a slider, Kling's a choice of 5 or 10 s): make the box's control
  // the kind the chosen provider declares, keeping its name, id and help.
  function make(tag, attrs) {
    var el = document.createElement(tag);
    Object.keys(attrs).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    return el;
  }

  function fitControl(box, param) {
    var control = box.querySelector("input, select");
    var wantSelect = param.type === "choice";
    if ((control.tagName === "SELECT") === wantSelect) return;
    var name = box.dataset.param, id = "id_" + name;
    var described = "param-" + name + "-help param-" + name + "-error";
    var help = box.querySelector(".param-meaning");
    Array.prototype.slice.call(box.children).forEach(function (el) {
      if (el !== help && !el.classList.contains("error")) box.removeChild(el);
    });
    var label = make("label", {"for": id, "class": "param-label"});
    if (wantSelect) {
      box.insertBefore(label, help);
      box.insertBefore(make("select", {name: name, id: id, "aria-describedby": described}), help);
      return;
    }
    var head = make("div", {"class": "slider-head"});
    head.appendChild(label);
    head.appendChild(make("output", {id: "param-" + name + "-value", "for": id, "data-unit": param.unit || ""}));
    var input = make("input", {type: "range", name: name, id: id, "aria-describedby": described});
    input.addEventListener("input", function () { showValue(box); });
    var scale = make("div", {"class": "scale", "aria-hidden": "true"});
    scale.appendChild(make("span", {"class": "param-low"}));
    scale.appendChild(make("span", {"class": "param-high"}));
    [head, input, scale].forEach(function (el) { box.insertBefore(el, help); });
  }

  function setParameters(p) {
    var own = {};
    (p.parameters || []).forEach(function (param) { own[param.name] = param; });
    // The common sliders only for a provider that takes them (Pipelet takes neither):
    // a control that changes nothing would mislead. Hidden, they still send their value.
    var takes = p.takes || [];
    Array.prototype.forEach.call(form.querySelectorAll("[data-common]"), function (box) {
      box.hidden = takes.indexOf(box.dataset.common) < 0;
    });
    Array.prototype.forEach.call(form.querySelectorAll(".provider-param"), function (box) {
      var param = own[box.dataset.param];
      if (param) fitControl(box, param);
      var control = box.querySelector("input, select");
      box.hidden = !param;
      control.disabled = !param;  // a disabled control is not sent
      if (!param) return;
      box.querySelector(".param-label").textContent = param.label;
      box.querySelector(".param-meaning").textContent = param.meaning;
      if (control.tagName === "SELECT") {
        // This provider's choices, keeping the one picked when it still is one.
        var picked = control.value;
        control.innerHTML = "";
        (param.choices || []).forEach(function (choice) {
          var option = document.createElement("option");
          option.value = String(choice);
          option.textContent = String(choice) + (param.unit ? " " + param.unit : "");
          control.appendChild(option);
        });
        control.value = (param.choices || []).map(String).indexOf(picked) >= 0 ? picked : String(param.default);
        return;
      }
      if (control.type !== "range") return;
      var unit = param.unit ? " " + param.unit : "";
      var value = Number(control.value);
      control.min = param.minimum;
      control.max = param.maximum;
      control.step = param.step;
      if (control.value === "" || value < param.minimum || value > param.maximum) control.value = param.default;
      box.querySelector(".param-low").textContent = param.minimum + unit;
      box.querySelector(".param-high").textContent = param.maximum + unit;
      box.querySelector("output").dataset.unit = param.unit;
      showValue(box);
    });
  }

  Array.prototype.forEach.call(form.querySelectorAll(".provider-param input[type=range]"), function (input) {
    input.addEventListener("input", function () { showValue(input.closest(".provider-param")); });
  });

  // --- the photo ---
  function megabytes(n) { return (n / 1048576).toFixed(1).replace(/\.0$/, "") + " MB"; }

  function sniff(bytes) {
    var jpeg = [0xff, 0xd8, 0xff], png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
    function starts(sig) { return sig.every(function (b, i) { return bytes[i] === b; }); }
    if (starts(jpeg)) return "JPEG";
    if (starts(png)) return "PNG";
    return null;
  }

  function checkFile(file) {
    if (file.size === 0) return Promise.resolve("The file is empty (0 bytes). Choose a JPEG or PNG image.");
    if (file.size > maxBytes) {
      return Promise.resolve("The file is " + megabytes(file.size) + "; images must be " +
        form.dataset.maxMb + " MB or smaller.");
    }
    return file.slice(0, 16).arrayBuffer().then(function (buffer) {
      if (sniff(new Uint8Array(buffer))) return null;
      return "This file is not a JPEG or PNG image. Upload a JPEG or PNG (save or export it as one first).";
    });
  }

  function nearestFraming(w, h) {
    var aspect = Math.log(w / h), best = null, bestKey = null;
    Object.keys(FRAMINGS).forEach(function (name) {
      var size = FRAMINGS[name];
      var key = [Math.round(Math.abs(Math.log(size[0] / size[1]) - aspect) * 1e9), size[0] === size[1] ? 1 : 0];
      if (best === null || key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) {
        best = name; bestKey = key;
      }
    });
    return best;
  }

  function chosenFraming() {
    var checked = form.querySelector("input[name=framing]:checked");
    return checked ? checked.value : "auto";
  }

  // Scale to cover, keep the centre: the same arithmetic as the server's intake.
  function draw() {
    if (!picture) return;
    var sw = picture.naturalWidth, sh = picture.naturalHeight;
    var choice = chosenFraming();
    var name = choice === "auto" ? nearestFraming(sw, sh) : choice;
    var tw = FRAMINGS[name][0], th = FRAMINGS[name][1];
    var scale = Math.max(tw / sw, th / sh);
    var bw = Math.min(sw, tw / scale), bh = Math.min(sh, th / scale);
    canvas.width = tw;
    canvas.height = th;
    canvas.dataset.framing = name;
    var ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";  // transparency is flattened onto white, as on the server
    ctx.fillRect(0, 0, tw, th);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(picture, (sw - bw) / 2, (sh - bh) / 2, bw, bh, 0, 0, tw, th);
    var label = name.charAt(0).toUpperCase() + name.slice(1) + " " + tw + "×" + th;
    var cut = [];
    if (bw < sw - 0.5) cut.push(Math.round((1 - bw / sw) * 100) + "% of the width");
    if (bh < sh - 0.5) cut.push(Math.round((1 - bh / sh) * 100) + "% of the height");
    $("preview-caption").textContent = label +
      (choice === "auto" ? ", the nearest shape to your " + sw + "×" + sh + " photo" : "") + ". " +
      (cut.length ? "The edges are cut off: " + cut.join(" and ") + "." : "Nothing is cut off.");
    canvas.setAttribute("aria-label", "Your photo framed as the video will be: " + label);
    $("preview-box").hidden = false;
  }

  function useFile(file) {
    picture = null;
    $("preview-box").hidden = true;
    var again = $("image-again");
    if (again) again.hidden = true;
    if (reused) $("reuse-photo").hidden = !!file;
    if (!file && reused) { fileProblem = null; return; }
    if (!file) { fileProblem = "Choose a photo (JPEG or PNG) to animate."; return; }
    fileCheck = checkFile(file).then(function (problem) {
      fileProblem = problem;
      showError("image-error", problem);
      if (problem) return;
      var img = new Image();
      img.onload = function () { picture = img; draw(); };
      img.onerror = function () {
        fileProblem = "This image cannot be read; it may be damaged. Save it again as JPEG or PNG and upload that.";
        showError("image-error", fileProblem);
      };
      img.src = URL.createObjectURL(file);
    });
  }

  fileInput.addEventListener("change", function () { useFile(fileInput.files[0]); });
  Array.prototype.forEach.call(form.querySelectorAll("input[name=framing]"), function (r) {
    r.addEventListener("change", draw);
  });

  var zone = $("dropzone");
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    if (!e.dataTransfer.files.length) return;
    fileInput.files = e.dataTransfer.files;
    useFile(fileInput.files[0]);
  });

  // --- seed ---
  var seed = $("id_seed");
  seed.addEventListener("input", function () { if (seed.value) $("id_seed_mode_fixed").checked = true; });
  $("id_seed_mode_fixed").addEventListener("change", function () { seed.focus(); });
  $("id_seed_mode_random").addEventListener("change", function () { showError("seed-error", ""); });

  function seedProblem() {
    if (!$("id_seed_mode_fixed").checked) return null;
    var n = Number(seed.value);
    if (!seed.value || !Number.isInteger(n) || n < 1 || n > SEED_MAX) {
      return "Enter a seed from 1 to " + SEED_MAX + ", or choose Random.";
    }
    return null;
  }

  // --- provider, model, cost ---
  function chosenProvider() {
    var checked = form.querySelector("input[name=provider]:checked");
    return checked ? providers[checked.value] : null;
  }

  // The chosen model's cost: a provider's models may cost different amounts.
  function chosenCost(p) {
    var model = $("id_model").value;
    var costs = p.model_costs || {};
    return Object.prototype.hasOwnProperty.call(costs, model) ? costs[model] : p.cost;
  }

  function showCost() {
    var p = chosenProvider();
    if (!p) return;
    var cost = chosenCost(p);
    $("cost-now").textContent = cost + " credit" + (cost === 1 ? "" : "s");
    showError("provider-error", creditProblem());
  }

  function creditProblem() {
    var p = chosenProvider();
    if (!p) return "Choose a provider.";
    var cost = chosenCost(p);
    if (cost > balance) {
      return "Not enough credits: this costs " + cost + " credit" + (cost === 1 ? "" : "s") +
        " and your balance is " + balance + ". Ask for more credits or choose a cheaper provider.";
    }
    return null;
  }

  function providerChanged() {
    var p = chosenProvider();
    if (!p) return;
    var select = $("id_model");
    select.textContent = "";
    p.models.forEach(function (m) { select.appendChild(new Option(m, m)); });
    $("prompt-fields").hidden = !p.needs_prompt;
    $("tail-field").hidden = !p.accepts_tail_image;
    $("id_tail_image").disabled = !p.accepts_tail_image;  // a disabled input is not sent
    var keptTail = $("id_tail_from");  // "Run again with changes": the earlier end frame
    if (keptTail) keptTail.disabled = !p.accepts_tail_image;
    setParameters(p);
    showCost();
  }
  Array.prototype.forEach.call(form.querySelectorAll("input[name=provider]"), function (r) {
    r.addEventListener("change", providerChanged);
  });
  $("id_model").addEventListener("change", showCost);
  $("id_tail_image").addEventListener("change", function () {
    var kept = $("reuse-tail");
    if (kept) kept.hidden = !!$("id_tail_image").files.length;  // a file chosen wins over the kept frame
  });

  // --- submit ---
  var sending = false;
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (sending) return;
    if (!fileInput.files.length) useFile(null);
    fileCheck.then(function () {
      var problems = [["image-error", fileProblem, fileInput], ["seed-error", seedProblem(), seed],
        ["provider-error", creditProblem(), form.querySelector("input[name=provider]:checked")]];
      var first = null;
      problems.forEach(function (p) {
        showError(p[0], p[1]);
        if (p[1] && !first) first = p[2];
      });
      if (first) { first.focus(); return; }
      sending = true;
      $("make-video").disabled = true;
      $("make-video").textContent = "Uploading…";
      HTMLFormElement.prototype.submit.call(form);
    });
  });

  // Back from the job page: the page may come from the cache with the button still busy.
  window.addEventListener("pageshow", function () {
    sending = false;
    $("make-video").disabled = false;
    $("make-video").textContent = "Make the video";
  });

  // Say it before anything is chosen when the balance cannot pay for the video.
  if ($("provider-error").hidden) showError("provider-error", creditProblem());

  if (fileInput.files.length) useFile(fileInput.files[0]);  // a file kept by the browser on "back"
  else fileProblem = reused ? null : "Choose a photo (JPEG or PNG) to animate.";
})();
