<#
.SYNOPSIS
  Turns this Windows instance into a Leostream desktop and reports the outcome as an instance tag.

.DESCRIPTION
  Run by the Windows user data at first boot (-VarsFile) and by the windows_desktop role when a control
  node manages the desktop (-VarsJsonBase64). The variables are the keys of windows_desktop_vars in
  roles/windows_desktop/vars/main.yml. Idempotent: every step checks before it changes.
  Uses the AWS Tools for PowerShell that Amazon's Windows AMIs ship (New-EC2Tag, Get-SECSecretValue)
  with the instance role; nothing secret is passed in or written to the log.
#>
[CmdletBinding()]
param(
    [string]$VarsFile,
    [string]$VarsJsonBase64
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

if ($VarsFile) {
    $Vars = Get-Content -Raw -Path $VarsFile | ConvertFrom-Json
} elseif ($VarsJsonBase64) {
    $Vars = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($VarsJsonBase64)) | ConvertFrom-Json
} else {
    throw 'Pass -VarsFile or -VarsJsonBase64'
}

$StateDir = $Vars.windows_desktop_state_dir
$Downloads = Join-Path $StateDir 'downloads'
New-Item -ItemType Directory -Force -Path $Downloads | Out-Null

function Write-Step([string]$Message) {
    Write-Output ("[vdi-bootstrap] {0} {1}" -f (Get-Date -Format s), $Message)
}

function Set-BootstrapTag([string]$Status, [string]$Cause) {
    # The outcome and, on failure, its cause in plain words, in one call: a reader never sees one without the other.
    if (-not $Vars.vdi_instance_id) { return }
    $Tags = @(@{ Key = $Vars.vdi_bootstrap_tag_key; Value = $Status })
    if ($Cause) { $Tags += @{ Key = $Vars.vdi_bootstrap_cause_tag_key; Value = $Cause } }
    New-EC2Tag -Region $Vars.vdi_region -Resource $Vars.vdi_instance_id -Tag $Tags
}

function Save-Outcome([string]$Status, [string]$Cause) {
    [ordered]@{
        status = $Status; cause = $Cause; issue = $Vars.vdi_issue_key; request = $Vars.vdi_request_id
        bundle = $Vars.vdi_bundle; broker = $Vars.vdi_broker_address; display_protocol = $Vars.vdi_display_protocol
    } | ConvertTo-Json | Set-Content -Path (Join-Path $StateDir 'bootstrap.json')
}

function Save-Download([string]$Url, [string]$Sha256) {
    $Target = Join-Path $Downloads ([IO.Path]::GetFileName(([Uri]$Url).AbsolutePath))
    if (-not (Test-Path $Target)) {
        Invoke-WebRequest -UseBasicParsing -Uri $Url -OutFile $Target
    }
    if ($Sha256 -and ((Get-FileHash -Algorithm SHA256 -Path $Target).Hash -ne $Sha256.ToUpper())) {
        Remove-Item -Force $Target
        throw "Checksum mismatch for $Url"
    }
    return $Target
}

function Resolve-Secrets([string]$Text) {
    # Installer arguments may name {{ vdi_instance_secret_values.NAME }}; NAME maps to a Secrets Manager id.
    foreach ($Entry in $Vars.vdi_secrets.PSObject.Properties) {
        $Placeholder = '{{ vdi_instance_secret_values.' + $Entry.Name + ' }}'
        if ($Text.Contains($Placeholder)) {
            $Text = $Text.Replace($Placeholder, (Get-SECSecretValue -Region $Vars.vdi_region -SecretId $Entry.Value).SecretString)
        }
    }
    return $Text
}

function Install-Msi($Package) {
    if ($Package.creates -and (Test-Path $Package.creates)) { return }
    $Msi = Save-Download $Package.url $Package.sha256
    $Arguments = @('/i', "`"$Msi`"", '/qn', '/norestart') + @($Package.args | Where-Object { $_ })
    $Process = Start-Process msiexec.exe -Wait -PassThru -ArgumentList $Arguments
    if ($Process.ExitCode -notin 0, 3010) { throw "$($Package.name): msiexec exited $($Process.ExitCode)" }
}

function Open-FirewallPort([string]$Spec) {
    $Port, $Protocol = $Spec.Split('/')
    $Name = "VDI $Protocol $Port"
    if (-not (Get-NetFirewallRule -DisplayName $Name -ErrorAction SilentlyContinue)) {
        New-NetFirewallRule -DisplayName $Name -Direction Inbound -Action Allow -Protocol $Protocol.ToUpper() -LocalPort $Port | Out-Null
    }
}

# $Step names what runs, in plain words: on failure it becomes the cause tag.
$Step = 'Report that the setup started'
try {
    Set-BootstrapTag 'running'

    $Step = 'Install the base software'
    Write-Step 'base software'
    foreach ($Feature in $Vars.windows_desktop_features) {
        Install-WindowsFeature -Name $Feature | Out-Null
    }
    $BundlePackages = @($Vars.windows_desktop_bundle_msi_packages.($Vars.vdi_bundle))
    foreach ($Package in @($Vars.windows_desktop_msi_packages) + $BundlePackages) {
        if ($Package) { Install-Msi $Package }
    }

    $Step = 'Install the Leostream agent'
    Write-Step "Leostream agent, broker $($Vars.vdi_broker_address)"
    if (-not (Get-Service -Name $Vars.windows_desktop_agent_service -ErrorAction SilentlyContinue)) {
        $Installer = Save-Download $Vars.windows_desktop_agent_url $Vars.windows_desktop_agent_sha256
        $Arguments = Resolve-Secrets $Vars.windows_desktop_agent_install_args
        $Start = @{ FilePath = $Installer; Wait = $true; PassThru = $true }
        if ($Arguments) { $Start.ArgumentList = $Arguments }
        $Process = Start-Process @Start
        if ($Process.ExitCode -ne 0) { throw "Leostream agent installer exited $($Process.ExitCode)" }
    }
    Set-Service -Name $Vars.windows_desktop_agent_service -StartupType Automatic
    Start-Service -Name $Vars.windows_desktop_agent_service

    $Step = "Set up the display protocol $($Vars.vdi_display_protocol)"
    Write-Step "display protocol $($Vars.vdi_display_protocol)"
    switch ($Vars.vdi_display_protocol) {
        'rdp' {
            Set-ItemProperty -Path 'HKLM:\System\CurrentControlSet\Control\Terminal Server' -Name fDenyTSConnections -Value 0
        }
        'dcv' {
            Install-Msi ([pscustomobject]@{ name = 'Amazon DCV'; url = $Vars.windows_desktop_dcv_msi_url; sha256 = ''; args = ''; creates = '' })
            Set-Service -Name $Vars.windows_desktop_dcv_service -StartupType Automatic
            Start-Service -Name $Vars.windows_desktop_dcv_service
        }
        'none' { }
        default { throw "Unknown display protocol $($Vars.vdi_display_protocol)" }
    }

    $Step = 'Open the firewall ports'
    Write-Step 'firewall'
    $Ports = @("$($Vars.leostream_agent_port)/tcp", "$($Vars.leostream_agent_port)/udp") + @($Vars.remote_display_ports.($Vars.vdi_display_protocol))
    foreach ($Spec in $Ports) {
        if ($Spec) { Open-FirewallPort $Spec }
    }

    $Step = 'Report that the desktop is ready'
    Save-Outcome 'done' ''
    Set-BootstrapTag 'done'
    Write-Step 'done'
} catch {
    Write-Step "failed: $($_.Exception.Message)"
    $Cause = "Setup step failed: $Step"
    # The marker first: it tells the user data that this failure is reported, with its own cause.
    Save-Outcome 'failed' $Cause
    Set-BootstrapTag 'failed' $Cause
    throw
}
